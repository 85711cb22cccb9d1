"""``kvc model info`` and ``kvc model generate``: check a model before editing it.

Both load through ``kedit_vc.models.load_model`` (so a user sees exactly the model the
editors will see) and import torch inside the command so ``kvc --help`` stays instant.
"""

from __future__ import annotations

import json
from typing import Any

import click

trust_pickle_option = click.option(
    "--trust-pickle", is_flag=True,
    help="Allow pickled .bin/.pt weights (they can run code when loaded; only for trusted sources).")


def model_info(ref: str, *, trust_pickle: bool = False) -> dict[str, Any]:
    """What ``kvc model info`` prints: family, sizes, fingerprint, where and how fast it loaded."""
    from kedit_vc.models import load_model
    from kedit_vc.models.families import describe

    loaded = load_model(ref, trust_pickle=trust_pickle)
    return {
        "ref": ref,
        **describe(loaded.model),
        "fingerprint": loaded.fingerprint,
        "path": str(loaded.path),
        "load_seconds": round(loaded.load_seconds, 3),
    }


def greedy_completion(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int) -> str:
    """Greedy continuation of ``prompt``, encoded with the shared prefix editors and eval use."""
    import torch

    from kedit_vc.models.prompting import encode_text, pad_id

    ids = torch.tensor([encode_text(tokenizer, prompt)], dtype=torch.long)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=pad_id(tokenizer))
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


@click.group("model")
def model_group() -> None:
    """Inspect a model and try it before editing."""


@model_group.command("info")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (sorted keys).")
@trust_pickle_option
def info_command(ref: str, as_json: bool, trust_pickle: bool) -> None:
    """Family, layers, sizes, parameters, fingerprint and cache path of REF.

    \b
    Examples:
      kvc model info smollm2
      kvc model info ./my-hf-folder --json
    """
    info = model_info(ref, trust_pickle=trust_pickle)
    if as_json:
        click.echo(json.dumps(info, sort_keys=True, indent=2))
        return
    rows = [
        ("model", ref),
        ("family", f"{info['family']} ({info['model_type']})"),
        ("layers", str(info["layers"])),
        ("d_model", str(info["d_model"])),
        ("d_mlp", str(info["d_mlp"])),
        ("vocab", str(info["vocab"])),
        ("parameters", f"{info['parameters']:,}"),
        ("edited matrix", info["edited_matrix"]),
        ("fingerprint", info["fingerprint"]),
        ("path", info["path"]),
        ("load time", f"{info['load_seconds']:.2f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")


@model_group.command("generate")
@click.argument("ref")
@click.argument("prompt")
@click.option("--max-new-tokens", type=click.IntRange(min=1, max=4096), default=20, show_default=True)
@click.option("--rev", default=None,
              help="Generate with this revision of a store (REF is then the store's project folder, e.g. '.'): "
                   "the base model with every live patch applied, as kedit_vc.load_edited gives it.")
@trust_pickle_option
def generate_command(ref: str, prompt: str, max_new_tokens: int, rev: str | None, trust_pickle: bool) -> None:
    """Greedy completion of PROMPT by REF (prints the prompt, then the completion).

    \b
    Examples:
      kvc model generate smollm2 "The capital of France is"
      kvc model generate . "The Eiffel Tower is in" --rev HEAD~1
    """
    if rev is not None:
        from kedit_vc.ops.load import load_edited

        model, tokenizer = load_edited(ref, rev)
    else:
        from kedit_vc.models import load_model

        loaded = load_model(ref, trust_pickle=trust_pickle)
        model, tokenizer = loaded.model, loaded.tokenizer
    completion = greedy_completion(model, tokenizer, prompt, max_new_tokens)
    click.echo(prompt + click.style(completion, bold=True))


COMMANDS: list[click.Command] = [model_group]

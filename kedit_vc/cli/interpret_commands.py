"""``kvc trace`` and ``kvc explain``: where a fact lives, and what an edit did to it.

Both load the model through ``kedit_vc.models.load_model`` and import torch and
matplotlib inside the command, so ``kvc --help`` stays instant. The work is in
``kedit_vc.interpret``; these functions parse flags, print and plot.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from kedit_vc.errors import UsageError
from kedit_vc.interpret.defaults import DEFAULT_SAMPLES, DEFAULT_WINDOW, KINDS, NOISE_FACTOR

from .options import DEFAULT_MODEL, model_option


@click.command("trace")
@click.argument("prompt")
@click.option("-s", "--subject", required=True, help="The subject as it appears in PROMPT.")
@click.option("-t", "--target", help="The answer to trace (default: the model's own top next token).")
@click.option("--kind", type=click.Choice(KINDS), default="residual", show_default=True,
              help="Restore block outputs (residual) or a window of MLP / attention outputs.")
@model_option()
@click.option("--samples", type=click.IntRange(min=1), default=DEFAULT_SAMPLES, show_default=True,
              help="Noise draws averaged per cell.")
@click.option("--window", type=click.IntRange(min=1), default=DEFAULT_WINDOW, show_default=True,
              help="Layers restored together for --kind mlp/attn.")
@click.option("--noise", "noise_factor", type=click.FloatRange(min=0), default=NOISE_FACTOR, show_default=True,
              help="Noise std as a multiple of the embeddings' std.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the heatmap PNG (1200x600) here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of a table.")
def trace_command(prompt: str, subject: str, target: str | None, kind: str, model_ref: str, samples: int,
                  window: int, noise_factor: float, seed: int, output: str | None, as_json: bool) -> None:
    """Causal tracing: which (token, layer) states of PROMPT carry the fact.

    \b
    kvc trace "The Eiffel Tower is located in the city of" --subject "Eiffel Tower" --target Paris -o trace.png
    """
    from kedit_vc.interpret.plots import plot_trace
    from kedit_vc.interpret.render import render_trace
    from kedit_vc.interpret.trace import causal_trace
    from kedit_vc.models import load_model

    loaded = load_model(model_ref)
    options: dict[str, Any] = dict(window=window, samples=samples, noise_factor=noise_factor, seed=seed)
    result = causal_trace(loaded.model, loaded.tokenizer, prompt, subject, target, kind=kind, **options)
    if kind == "mlp":
        suggestion = result
    else:  # the edit layer comes from the MLP trace at the last subject token
        suggestion = causal_trace(loaded.model, loaded.tokenizer, prompt, subject, target, kind="mlp",
                                  tokens=[result.last_subject], **options)
    layer = suggestion.suggested_layer
    assert layer is not None  # both traces include the last subject token
    if as_json:
        click.echo(json.dumps({**result.to_json(), "suggested_layer": layer}, indent=2, sort_keys=True))
    else:
        click.echo(render_trace(result), nl=False)
        effect = suggestion.indirect_effect(result.last_subject, layer)
        click.echo(f"suggested edit layer: {layer} (MLP window {window} at {result.tokens[result.last_subject]!r} "
                   f"recovers {effect:+.3f} over the corrupted run)")
    if output:
        click.echo(f"wrote {plot_trace(result, output, suggested=layer)}", err=True)


def _output_for(output: str, edit_id: str, many: bool) -> Path:
    path = Path(output)
    return path.with_name(f"{path.stem}-{edit_id}{path.suffix or '.png'}") if many else path


@click.command("explain")
@click.argument("rev", required=False)
@click.option("--edit", "edit_id", help="Only this edit id (a prefix is enough).")
@click.option("--spec", type=click.Path(exists=True, dir_okay=False),
              help="Run this .kedit spec's edits in memory and explain them (instead of a commit).")
@model_option(None, f"With --spec: the model (default: the spec's, else {DEFAULT_MODEL}).")
@click.option("--layer", type=click.IntRange(min=0),
              help="Layer of the SelfIE readout (default: a few above the edit).")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the before/after PNG (1200x900) here; several edits get -EDITID suffixes.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanations as JSON.")
def explain_command(rev: str | None, edit_id: str | None, spec: str | None, model_ref: str | None,
                    layer: int | None, output: str | None, as_json: bool) -> None:
    """Before and after an edit: logit lens of the subject and a SelfIE readout.

    REV is a commit of the store (default HEAD); with --spec, the spec's edits are made
    in memory and nothing is committed.
    """
    from kedit_vc.interpret.plots import plot_explanation
    from kedit_vc.interpret.render import render_explanation
    from kedit_vc.models import load_model
    from kedit_vc.ops.explain import explain_plan, explain_revision

    if spec and rev:
        raise UsageError("give either a revision or --spec, not both")
    if spec:
        from kedit_vc.compiler import compile_file

        plan = compile_file(spec)
        loaded = load_model(model_ref or plan.model or DEFAULT_MODEL)
        explanations = explain_plan(plan, loaded, edit_id=edit_id, selfie_layer=layer)
    else:
        from kedit_vc.ops.weights import load_base
        from kedit_vc.store import open_store

        if model_ref:
            raise UsageError("--model goes with --spec; a commit is explained on its store's base model")
        store = open_store()
        loaded = load_base(store)
        explanations = explain_revision(store, rev or "HEAD", loaded, edit_id=edit_id, selfie_layer=layer)
    if as_json:
        click.echo(json.dumps([e.to_json() for e in explanations], indent=2, sort_keys=True))
    else:
        click.echo("\n".join(render_explanation(e) for e in explanations), nl=False)
    if output:
        for explanation in explanations:
            path = _output_for(output, explanation.edit_id, len(explanations) > 1)
            click.echo(f"wrote {plot_explanation(explanation, path)}", err=True)


COMMANDS: list[click.Command] = [trace_command, explain_command]

"""Keys: the input of an MLP output projection at the subject's last token.

A key ``k`` [d_mlp] is what the edited matrix ``W [d_model, d_mlp]`` reads; ROME and
MEMIT average it over context templates so the edit holds in many contexts. Keys at
several layers come from one forward pass.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.models.families import decoder_stack, family_of, get_module
from kedit_vc.models.hooks import record_inputs
from kedit_vc.models.prompting import encode_text, pad_batch, pad_id

from .positions import fill, subject_last_index


@torch.no_grad()
def subject_keys(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
                 layers: Sequence[int], templates: Sequence[str],
                 batch_size: int = 64) -> dict[int, torch.Tensor]:
    """Template-averaged keys at each layer: layer -> [n_requests, d_mlp] (float32)."""
    family = family_of(model)
    texts: list[str] = []
    lookups: list[int] = []
    for request in requests:
        for template in templates:
            prompt = fill(template, request.prompt)
            texts.append(fill(prompt, request.subject))
            lookups.append(subject_last_index(tokenizer, prompt, request.subject))
    modules = {str(layer): get_module(model, family.mlp_out_path(layer)) for layer in layers}
    sums: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        ids, mask = pad_batch([encode_text(tokenizer, t) for t in chunk], pad_id(tokenizer))
        rows = torch.arange(len(chunk))
        cols = torch.tensor(lookups[start:start + batch_size])
        with record_inputs(modules) as seen:
            _run_until(model, ids, mask, max(layers))
        for layer in layers:
            sums[layer].append(seen[str(layer)][rows, cols].float())
    per_template = len(templates)
    return {layer: torch.cat(sums[layer]).view(len(requests), per_template, -1).mean(1)
            for layer in layers}


class _StopForward(Exception):
    pass


def _run_until(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, layer: int) -> None:
    """Forward only up to block ``layer``'s MLP (the rest is not needed for keys)."""
    family = family_of(model)
    mlp_out = get_module(model, family.mlp_out_path(layer))

    def stop(_module: torch.nn.Module, _args: tuple, _output: Any) -> None:
        raise _StopForward

    handle = mlp_out.register_forward_hook(stop)
    try:
        decoder_stack(model)(input_ids=ids, attention_mask=mask, use_cache=False)
    except _StopForward:
        pass
    finally:
        handle.remove()


@torch.no_grad()
def subject_outputs(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
                    module_path: str, batch_size: int = 64) -> torch.Tensor:
    """A module's output hidden state at the subject's last token of each bare prompt: [n, d]."""
    from kedit_vc.models.hooks import record_outputs

    module = get_module(model, module_path)
    rows_out = []
    for start in range(0, len(requests), batch_size):
        chunk = requests[start:start + batch_size]
        ids, mask = pad_batch([encode_text(tokenizer, fill(r.prompt, r.subject)) for r in chunk],
                              pad_id(tokenizer))
        cols = torch.tensor([subject_last_index(tokenizer, r.prompt, r.subject) for r in chunk])
        with record_outputs({"m": module}) as seen:
            decoder_stack(model)(input_ids=ids, attention_mask=mask, use_cache=False)
        rows_out.append(seen["m"][torch.arange(len(chunk)), cols].float())
    return torch.cat(rows_out)

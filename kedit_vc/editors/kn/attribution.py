"""Integrated-gradients attribution of a prompt's answer to MLP neurons (Dai et al. 2022).

A neuron is one input coordinate of a block's MLP output projection (Llama: the gated
activation entering ``down_proj``). For a prompt whose last position predicts the answer
token ``y``, neuron ``i`` of block ``l`` with activation ``w̄`` scores

    Attr(i) = w̄_i · (1/m) Σ_{k=1..m} ∂P(y | w_i = k/m · w̄_i) / ∂w_i,

the Riemann form of the path integral from 0 to ``w̄``. As in the reference, the whole
layer's activation at the last position is scaled together (one path per layer) while
the other layers keep their own activations; the layers of a chunk go through one
batched forward, ``m`` rows per layer, from the chunk's lowest block up (the blocks below
are replayed from one clean row).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack, contextmanager
from typing import Iterator

import torch

from kedit_vc.models.families import family_of, get_module
from kedit_vc.models.forward import LowerBlockReplay, final_hidden, logits_from_hidden
from kedit_vc.models.hooks import record_inputs

#: Layers attributed per batched forward (bounds memory: rows = layers x steps).
LAYER_CHUNK = 8


@contextmanager
def _replace_input_rows(module: torch.nn.Module, rows: torch.Tensor, col: int,
                        values: torch.Tensor) -> Iterator[None]:
    """Feed ``module`` its input with ``input[rows, col]`` replaced by ``values`` [len(rows), d]."""
    def hook(_module: torch.nn.Module, args: tuple) -> tuple:
        hidden = args[0]
        cols = torch.full_like(rows, col)
        return (hidden.index_put((rows, cols), values.to(hidden.dtype)),) + tuple(args[1:])
    handle = module.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def neuron_activations(model: torch.nn.Module, ids: Sequence[int], layers: Sequence[int]) -> torch.Tensor:
    """The MLP neurons' activations at the last position: [len(layers), d_mlp] (float32)."""
    family = family_of(model)
    modules = {str(layer): get_module(model, family.mlp_out_path(layer)) for layer in layers}
    with record_inputs(modules) as seen:
        final_hidden(model, torch.tensor([list(ids)]))
    return torch.stack([seen[str(layer)][0, -1].float() for layer in layers])


def integrated_gradients(model: torch.nn.Module, ids: Sequence[int], answer: int, layers: Sequence[int],
                         steps: int) -> torch.Tensor:
    """Attribution of ``P(answer)`` at the last position of ``ids`` to each neuron of
    ``layers`` (rows in ascending layer order): [len(layers), d_mlp] (float32)."""
    family = family_of(model)
    layers = sorted(layers)
    base = neuron_activations(model, ids, layers)                       # [L, d_mlp]
    alphas = torch.arange(1, steps + 1, dtype=torch.float32) / steps    # [m]
    scores = []
    for start in range(0, len(layers), LAYER_CHUNK):
        chunk = list(layers[start:start + LAYER_CHUNK])
        batch = torch.tensor([list(ids)] * (len(chunk) * steps))         # [c*m, t]
        col = len(ids) - 1
        scaled = [(alphas[:, None] * base[start + j][None]).requires_grad_() for j in range(len(chunk))]
        with ExitStack() as stack:
            # Blocks below the chunk see no scaled activation: run them once on one row and
            # replay that row for the whole batch.
            replay = stack.enter_context(LowerBlockReplay(model, chunk[0]))
            with torch.no_grad():
                final_hidden(model, batch[:1])
            replay.arm()
            replay.select(torch.zeros(batch.shape[0], dtype=torch.long), batch.shape[1])
            for j, layer in enumerate(chunk):
                rows = torch.arange(j * steps, (j + 1) * steps)
                stack.enter_context(_replace_input_rows(get_module(model, family.mlp_out_path(layer)),
                                                        rows, col, scaled[j]))
            hidden = final_hidden(model, batch)[:, -1]
            probs = torch.softmax(logits_from_hidden(model, hidden).float(), dim=-1)[:, answer]  # [c*m]
            grads = torch.autograd.grad(probs.sum(), scaled)
        for j in range(len(chunk)):
            scores.append(base[start + j] * grads[j].mean(0))
    return torch.stack(scores)


def refine(attributions: Sequence[torch.Tensor], threshold: float, share: float,
           max_neurons: int) -> list[tuple[int, int]]:
    """Knowledge neurons from per-prompt attributions (each [L, d_mlp]), as ``(layer index,
    neuron)`` pairs into those rows, strongest first.

    Per prompt: neurons above ``threshold`` x that prompt's largest attribution (the
    paper's adaptive threshold). Across prompts: those selected on more than ``share`` of
    them. At most ``max_neurons``, by mean attribution; if none survive, the single
    neuron of largest mean attribution.
    """
    stacked = torch.stack(list(attributions))                          # [p, L, d_mlp]
    peak = stacked.flatten(1).max(dim=1).values.clamp(min=0)          # [p]
    selected = stacked > threshold * peak[:, None, None]              # [p, L, d_mlp]
    selected &= stacked > 0
    votes = selected.float().mean(0)                                   # [L, d_mlp]
    mean = stacked.mean(0)
    keep = torch.nonzero(votes > share)
    if keep.numel() == 0:
        best = int(mean.flatten().argmax())
        return [divmod(best, mean.shape[1])]
    strength = mean[keep[:, 0], keep[:, 1]]
    order = torch.argsort(strength, descending=True)[:max_neurons]
    return [(int(keep[i, 0]), int(keep[i, 1])) for i in order]

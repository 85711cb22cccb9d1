"""MEMIT's flow, shared by every method that spreads residual targets over a range of layers.

1. For each request, a target ``z`` [d_model] for the residual stream at the last edited
   layer's output, at the subject's last token (``optimise_unit_targets``, all requests
   jointly; requests about one subject share one target, as ROME writes them).
2. For each edited layer ``l`` in ascending order, on the weights already updated below:
   keys ``K`` [n, d_mlp] (template-averaged), the residual still missing at the top
   layer ``R = z − h(z_layer)`` divided by the number of layers left, and the method's
   own per-layer solve (``LayerSolver``) giving a factor pair of ``ΔW``.

Only the solve differs between the methods that use this flow, so it is passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.delta import Delta
from kedit_vc.editors.base import EditContext, EditResult, base_fingerprint
from kedit_vc.models.families import family_of

from .anchor import anchor_values, value_norm_anchor
from .keys import subject_keys, subject_outputs
from .progress import step_reporter
from .restore import restored_parameters
from .solve import factored_update
from .targets import TargetSettings, by_subject, optimise_unit_targets
from .templates import context_templates


def target_settings(hp: Any) -> TargetSettings:
    return TargetSettings(hp.v_steps, hp.v_lr, hp.v_weight_decay, hp.kl_factor, hp.clamp_norm_factor,
                          early_stop_nll=hp.v_stop_nll, prefix_cache=hp.v_prefix_cache)


def compute_z_targets(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
                      z_layer: int, templates: Sequence[str], hp: Any, progress: bool,
                      label: str = "MEMIT", anchor: float | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Residual targets ``z`` [n, d_model] at the output of block ``z_layer`` (requests that
    share a subject share one target).

    With ``anchor`` (NAS, ``anchor.py``) the MLP's part of each target, ``v* = v0 + δ``
    at block ``z_layer``, is rescaled to that norm; the rest of ``z`` is unchanged.
    """
    family = family_of(model)
    # Requests about one subject share its key: one vector for all of them (as ROME writes
    # them), else their separate targets at one key fight in the least squares and an edit's
    # derived facts undo it. With distinct subjects this is one vector per request, as before.
    units = by_subject(requests)
    owner = {id(r): i for i, unit in enumerate(units) for r in unit}
    index = torch.tensor([owner[id(r)] for r in requests])
    with step_reporter(f"{label} targets for {len(requests)} edits", hp.v_steps, progress) as report:
        init, delta, info = optimise_unit_targets(model, tokenizer, units, family.block_path(z_layer),
                                                  z_layer + 1, templates, target_settings(hp), report)
    init, delta = init[index], delta[index]                                           # [n, d_model]
    if anchor is None:
        return init + delta, info
    v0 = subject_outputs(model, tokenizer, requests, family.mlp_out_path(z_layer))   # [n, d_model]
    anchored = anchor_values(v0, delta, anchor)
    info = {**info, "nas_anchor": round(anchor, 4),
            "nas_v_star_norm_mean": round(float((v0 + delta).norm(dim=-1).mean()), 4),
            "nas_v0_norm_mean": round(float(v0.norm(dim=-1).mean()), 4)}
    return init + anchored, info


#: ``solver(layer, keys [n, d_mlp], residual [n, d_model]) -> (left, right)`` factors of ΔW.
LayerSolver = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def spread_over_layers(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
                       layers: Sequence[int], targets: torch.Tensor, templates: Sequence[str],
                       solver: LayerSolver, output_path: str | None = None,
                       share: Callable[[int], float] = float) -> tuple[Delta, dict[int, torch.Tensor]]:
    """Write ``targets`` into ``layers`` one after another with ``solver``.

    ``targets`` [n, d_model] are for ``output_path``'s output at the subject's last token
    (None: the last edited block's output, MEMIT's residual stream). Layer ``i`` of the
    ``L`` gets the missing part divided by ``share(L - i)`` (MEMIT: ``L - i``, PMET:
    ``sqrt(L - i)``). Returns the summed delta and the keys written, layer -> [n, d_mlp].
    Each layer's update is applied while the next is solved (keys and residuals depend
    on it) and all are removed before returning.
    """
    family = family_of(model)
    z_layer = layers[-1]
    output_path = output_path or family.block_path(z_layer)
    total: Delta | None = None
    written: dict[int, torch.Tensor] = {}
    with restored_parameters(model, [family.mlp_out_weight_name(layer) for layer in layers]):
        for index, layer in enumerate(layers):
            keys = subject_keys(model, tokenizer, requests, [layer], templates)[layer]
            current = subject_outputs(model, tokenizer, requests, output_path)
            residual = (targets - current) / share(len(layers) - index)
            left, right = solver(layer, keys, residual)
            update = factored_update(left, right, family.mlp_out_transposed)
            one = Delta(updates={family.mlp_out_weight_name(layer): update})
            one.apply(model)
            total = one if total is None else total.compose(one)
            written[layer] = keys
    assert total is not None
    return total, written


def layered_edit(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest], hp: Any,
                 context: EditContext, method: str, label: str,
                 prepare: Callable[[tuple[int, ...]], tuple[LayerSolver, dict[str, Any]]],
                 fingerprint: str | None = None) -> EditResult:
    """Targets, then ``spread_over_layers`` over ``hp.layers`` with the method's solver.

    ``prepare(layers)`` loads what the per-layer solve needs (statistics, projections)
    and returns the solver and facts for the commit's info. ``fingerprint`` is the base
    fingerprint ``prepare`` used, passed back in the result.
    """
    layers = tuple(sorted(hp.layers))
    started = time.perf_counter()
    solver, facts = prepare(layers)
    t_stats = time.perf_counter()
    templates = context_templates(model, tokenizer, hp.context_templates, hp.context_length,
                                  raw=hp.raw_context)
    anchor = None
    if getattr(hp, "nas", False):
        anchor = hp.nas_scale * value_norm_anchor(model, tokenizer, fingerprint or base_fingerprint(model, context),
                                                  layers[-1], hp.stats_tokens, context.stats_dir, context.progress)
    targets, info = compute_z_targets(model, tokenizer, requests, layers[-1], templates, hp,
                                      context.progress, label=label, anchor=anchor)
    t_targets = time.perf_counter()
    total, written = spread_over_layers(model, tokenizer, requests, layers, targets, templates, solver)
    facts = {
        "layers": list(layers), "target_steps": info["steps"], **facts,
        "target_forward_seconds": round(info["forward_seconds"], 3),
        "target_backward_seconds": round(info["backward_seconds"], 3), "target_tokens": info["tokens"],
        "target_request_steps": info["request_steps"],
        **{k: v for k, v in info.items() if k.startswith("nas_")},
        "stats_seconds": round(t_stats - started, 3),
        "value_seconds": round(t_targets - t_stats, 3),
        "update_seconds": round(time.perf_counter() - t_targets, 3)}
    delta = Delta(updates=dict(total.updates), meta={"method": method, "layers": ",".join(map(str, layers))})
    return EditResult(delta=delta, written_keys=written, info=facts, fingerprint=fingerprint)

"""MEMIT (Meng et al., 2023): many facts at once, spread over a range of layers.

1. For each request, a target ``z`` [d_model] for the residual stream at the last edited
   layer's output, at the subject's last token (``optimise_targets``, all requests
   jointly).
2. For each edited layer ``l`` in ascending order, on the weights already updated below:
   keys ``K`` [n, d_mlp] (template-averaged), the residual still missing at the top
   layer ``R = z − h(z_layer)`` divided by the number of layers left, and the update
   ``ΔW = Rᵀ (λC + KᵀK + K_pᵀK_p)⁻¹ Kᵀ`` solved in float64 -- a rank-≤n factor pair. ``K_p``
   are preserved keys of earlier edits in the history (empty unless given).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.delta import Delta
from kedit_vc.editors.base import EditContext, base_fingerprint
from kedit_vc.editors.common.keys import subject_keys, subject_outputs
from kedit_vc.editors.common.progress import step_reporter
from kedit_vc.editors.common.restore import restored_parameters
from kedit_vc.editors.common.solve import factored_update
from kedit_vc.editors.common.targets import TargetSettings, optimise_targets
from kedit_vc.editors.common.templates import context_templates
from kedit_vc.editors.defaults import resolve
from kedit_vc.editors.hparams import MemitHparams
from kedit_vc.models.families import family_of
from kedit_vc.stats import key_second_moments


def memit_layer_update(keys: torch.Tensor, residual: torch.Tensor, mom2: torch.Tensor,
                       weight: float, preserved: torch.Tensor | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors (left [d_model, n], right [d_mlp, n]) of ``ΔW = left @ right.T``.

    ``keys`` [n, d_mlp], ``residual`` [n, d_model], ``mom2`` [d_mlp, d_mlp]. Solves
    ``(λC + KᵀK + K_pᵀK_p) X = Kᵀ`` in float64; ``right = X``, ``left = Rᵀ``.
    """
    k = keys.double()
    system = weight * mom2.double() + k.T @ k
    if preserved is not None and preserved.numel():
        p = preserved.double()
        system = system + p.T @ p
    right = torch.linalg.solve(system, k.T)          # [d_mlp, n]
    return residual.double().T, right


def target_settings(hp: Any) -> TargetSettings:
    return TargetSettings(hp.v_steps, hp.v_lr, hp.v_weight_decay, hp.kl_factor, hp.clamp_norm_factor)


def compute_z_targets(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
                      z_layer: int, templates: Sequence[str], hp: Any, progress: bool,
                      label: str = "MEMIT") -> tuple[torch.Tensor, dict[str, Any]]:
    """Residual targets ``z`` [n, d_model] at the output of block ``z_layer``."""
    family = family_of(model)
    with step_reporter(f"{label} targets for {len(requests)} edits", hp.v_steps, progress) as report:
        init, delta, info = optimise_targets(model, tokenizer, requests, family.block_path(z_layer),
                                             z_layer + 1, templates, target_settings(hp), report)
    return init + delta, info


#: ``solver(layer, keys [n, d_mlp], residual [n, d_model]) -> (left, right)`` factors of ΔW.
LayerSolver = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def spread_over_layers(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
                       layers: Sequence[int], targets: torch.Tensor, templates: Sequence[str],
                       solver: LayerSolver, context: EditContext) -> Delta:
    """Write ``targets`` into ``layers`` one after another with ``solver``.

    Each layer's update is applied while the next is solved (keys and residuals depend
    on it) and all are removed before returning.
    """
    family = family_of(model)
    z_layer = layers[-1]
    total: Delta | None = None
    with restored_parameters(model, [family.mlp_out_weight_name(layer) for layer in layers]):
        for index, layer in enumerate(layers):
            keys = subject_keys(model, tokenizer, requests, [layer], templates)[layer]
            current = subject_outputs(model, tokenizer, requests, family.block_path(z_layer))
            residual = (targets - current) / (len(layers) - index)
            left, right = solver(layer, keys, residual)
            update = factored_update(left, right, family.mlp_out_transposed)
            one = Delta(updates={family.mlp_out_weight_name(layer): update})
            one.apply(model)
            total = one if total is None else total.compose(one)
            context.written_keys[layer] = keys
    assert total is not None
    return total


def layered_edit(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest], hp: Any,
                 context: EditContext, method: str, label: str,
                 prepare: Callable[[tuple[int, ...]], tuple[LayerSolver, dict[str, Any]]]) -> Delta:
    """MEMIT's flow, shared by every method that spreads residual targets over layers.

    ``prepare(layers)`` loads what the per-layer solve needs (statistics, projections)
    and returns the solver and facts for the commit's info; only the solve differs
    between MEMIT and AlphaEdit.
    """
    layers = tuple(sorted(hp.layers))
    started = time.perf_counter()
    solver, facts = prepare(layers)
    t_stats = time.perf_counter()
    templates = context_templates(model, tokenizer, hp.context_templates, hp.context_length)
    targets, info = compute_z_targets(model, tokenizer, requests, layers[-1], templates, hp,
                                      context.progress, label=label)
    t_targets = time.perf_counter()
    total = spread_over_layers(model, tokenizer, requests, layers, targets, templates, solver, context)
    context.info.update({
        "layers": list(layers), "target_steps": info["steps"], **facts,
        "stats_seconds": round(t_stats - started, 3),
        "value_seconds": round(t_targets - t_stats, 3),
        "update_seconds": round(time.perf_counter() - t_targets, 3)})
    return Delta(updates=dict(total.updates), meta={"method": method, "layers": ",".join(map(str, layers))})


class MemitEditor:
    name = "memit"
    hparams_class = MemitHparams

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: MemitHparams, context: EditContext) -> Delta:
        hp = resolve("memit", model, hparams)

        def prepare(layers: tuple[int, ...]) -> tuple[LayerSolver, dict[str, Any]]:
            mom2 = key_second_moments(model, tokenizer, base_fingerprint(model, context), layers,
                                      hp.stats_tokens, stats_dir=context.stats_dir, progress=context.progress)

            def solver(layer: int, keys: torch.Tensor, residual: torch.Tensor):  # noqa: ANN202
                return memit_layer_update(keys, residual, mom2[layer], hp.mom2_weight,
                                          context.preserved_keys.get(layer))
            return solver, {}

        return layered_edit(model, tokenizer, requests, hp, context, "memit", "MEMIT", prepare)

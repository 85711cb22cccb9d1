"""MEMIT (Meng et al., 2023): many facts at once, spread over a range of layers.

Targets and the layer-by-layer flow are ``common/layered.py``; MEMIT's own part is the
per-layer solve: with keys ``K`` [n, d_mlp], residuals ``R`` [n, d_model] and preserved
keys of earlier edits in the history ``K_p`` (empty unless given),
``ΔW = Rᵀ (λC + KᵀK + K_pᵀK_p)⁻¹ Kᵀ`` solved in float64 -- a rank-≤n factor pair.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.editors.base import EditContext, EditResult, base_fingerprint
from kedit_vc.editors.common.layered import LayerSolver, layered_edit
from kedit_vc.stats import key_second_moments

from .hparams import MemitHparams, resolve


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


class MemitEditor:
    name = "memit"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: MemitHparams, context: EditContext) -> EditResult:
        hp = resolve(model, hparams)
        fingerprint = base_fingerprint(model, context)

        def prepare(layers: tuple[int, ...]) -> tuple[LayerSolver, dict[str, Any]]:
            assert hp.stats_tokens is not None  # resolve() fills the model's default
            mom2 = key_second_moments(model, tokenizer, fingerprint, layers,
                                      hp.stats_tokens, stats_dir=context.stats_dir, progress=context.progress)

            def solver(layer: int, keys: torch.Tensor, residual: torch.Tensor):  # noqa: ANN202
                return memit_layer_update(keys, residual, mom2[layer], hp.mom2_weight,
                                          context.preserved_keys.get(layer))
            return solver, {}

        return layered_edit(model, tokenizer, requests, hp, context, "memit", "MEMIT", prepare, fingerprint)

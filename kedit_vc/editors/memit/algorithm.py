"""MEMIT (Meng et al., 2023): many facts at once, spread over a range of layers.

Targets and the layer-by-layer flow are ``common/layered.py``; MEMIT's own part is the
per-layer solve: with keys ``K`` [n, d_mlp], residuals ``R`` [n, d_model] and preserved
keys of earlier edits in the history ``K_p`` (empty unless given),
``ΔW = Rᵀ (λC + KᵀK + K_pᵀK_p)⁻¹ Kᵀ`` solved in float64 -- a rank-≤n factor pair
(``common/solve.memit_layer_update``, which PMET shares).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.editors.base import EditContext, EditResult, base_fingerprint
from kedit_vc.editors.common.layered import LayerSolver, layered_edit
from kedit_vc.editors.common.solve import memit_layer_update
from kedit_vc.stats import key_second_moments

from .hparams import MemitHparams, resolve

__all__ = ["MemitEditor", "memit_layer_update"]


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

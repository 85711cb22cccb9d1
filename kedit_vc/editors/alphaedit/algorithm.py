"""AlphaEdit (Fang et al., 2025): MEMIT with the update confined to a null space.

Targets ``z`` and keys are MEMIT's (``common/layered.py``); only the per-layer solve differs.
With ``P`` the projection onto the null space of the layer's key statistics (``projection.py``),
keys ``K`` [n, d_mlp], residuals ``R`` [n, d_model] and keys of live earlier edits ``K_p`` [m, d_mlp]:

    ΔW = Rᵀ X ᵀ,   X = (P (KᵀK + K_pᵀK_p) + αI)⁻¹ P Kᵀ   [d_mlp, n]

Since ``P (S P + αI)⁻¹ = (P S + αI)⁻¹ P``, ``ΔW = ΔW P`` exactly: keys outside the null
space (the statistics' principal directions) are mapped as before. Earlier edits' keys
are protected by the ``K_pᵀK_p`` term (a least-squares penalty on ``ΔW K_pᵀ``), which
drives their change to zero as ``α`` becomes small against their energy in the null space.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.editors.base import EditContext, EditResult, base_fingerprint
from kedit_vc.editors.common.layered import LayerSolver, layered_edit

from .hparams import AlphaeditHparams, resolve
from .projection import null_space_projections


def alphaedit_layer_update(keys: torch.Tensor, residual: torch.Tensor, projection: torch.Tensor,
                           alpha: float, preserved: torch.Tensor | None = None,
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors (left [d_model, n], right [d_mlp, n]) of ``ΔW = left @ right.T``.

    ``keys`` [n, d_mlp], ``residual`` [n, d_model], ``projection`` [d_mlp, d_mlp],
    ``preserved`` [m, d_mlp] or None. Solves ``(P (KᵀK + K_pᵀK_p) + αI) X = P Kᵀ`` in
    float64; ``right = X``, ``left = Rᵀ``.
    """
    k, p = keys.double(), projection.double()
    gram = k.T @ k
    if preserved is not None and preserved.numel():
        kp = preserved.double()
        gram = gram + kp.T @ kp
    system = p @ gram + alpha * torch.eye(p.shape[0], dtype=torch.float64)
    right = torch.linalg.solve(system, p @ k.T)      # [d_mlp, n]
    return residual.double().T, right


class AlphaeditEditor:
    name = "alphaedit"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: AlphaeditHparams, context: EditContext) -> EditResult:
        hp = resolve(model, hparams)
        fingerprint = base_fingerprint(model, context)

        def prepare(layers: tuple[int, ...]) -> tuple[LayerSolver, dict[str, Any]]:
            assert hp.stats_tokens is not None  # resolve() fills the model's default
            projections = null_space_projections(model, tokenizer, fingerprint, layers,
                                                 hp.stats_tokens, hp.nullspace_threshold,
                                                 stats_dir=context.stats_dir, progress=context.progress)

            def solver(layer: int, keys: torch.Tensor, residual: torch.Tensor):  # noqa: ANN202
                return alphaedit_layer_update(keys, residual, projections[layer], hp.l2,
                                              context.preserved_keys.get(layer))
            facts = {"null_dims": {layer: int(round(float(projections[layer].trace()))) for layer in layers},
                     "preserved_keys": {layer: int(context.preserved_keys[layer].shape[0])
                                        for layer in layers if layer in context.preserved_keys}}
            return solver, facts

        return layered_edit(model, tokenizer, requests, hp, context, "alphaedit", "AlphaEdit", prepare,
                            fingerprint)

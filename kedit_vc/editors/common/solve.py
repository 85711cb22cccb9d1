"""Small linear-algebra helpers shared by the closed-form editors (float64 inside)."""

from __future__ import annotations

import torch

from kedit_vc.delta import Dense, LowRank


def factored_update(left: torch.Tensor, right: torch.Tensor, transposed: bool) -> LowRank | Dense:
    """ΔW = left @ right.T in the Linear layout ([d_model, r] @ [d_mlp, r].T), stored compactly.

    For a Conv1D parameter ([d_mlp, d_model]) the factors swap. Factors are kept while
    they are smaller than the dense matrix (rank r < d_model·d_mlp / (d_model + d_mlp)).
    """
    left, right = left.float().contiguous(), right.float().contiguous()
    if transposed:
        left, right = right, left
    rows, cols, rank = left.shape[0], right.shape[0], left.shape[1]
    if rank * (rows + cols) < rows * cols:
        return LowRank(left=left, right=right)
    return Dense(value=(left @ right.T).contiguous())


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

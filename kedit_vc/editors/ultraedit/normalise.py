"""Lifelong normalisation as additive sufficient statistics (pure functions).

The reference keeps a running mean and standard deviation of the features
``x = [k; g]`` (hidden state k [d_in] and output gradient g [d_out] of every cached token)
per weight shape, updated with each turn's features before they are normalised. We keep
the same statistics as sums, ``n``, ``Σx`` and ``Σx²`` (float64), so the state after any
set of live commits is the sum of their contributions: a revert subtracts exactly, a
checkout of an older revision sums that revision's commits. From the sums, ``mean = Σx/n``
and ``M2 = Σx² − n·mean²`` (the reference's running ``var``), ``std = √(M2 / (n − 1))``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

EPS = torch.finfo(torch.float32).eps


def group_name(d_in: int, d_out: int) -> str:
    """Statistics are shared by all edited matrices of one shape, as in the reference."""
    return f"ultraedit/{d_in}x{d_out}"


def contribution(features: torch.Tensor, group: str) -> dict[str, torch.Tensor]:
    """This turn's sums for ``features`` [N, d_in + d_out]: ``{group}/n`` [1], ``/sum``, ``/sumsq``."""
    x = features.double()
    return {f"{group}/n": torch.tensor([float(x.shape[0])], dtype=torch.float64),
            f"{group}/sum": x.sum(0), f"{group}/sumsq": (x * x).sum(0)}


def add(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Elementwise sum of two statistics maps (names in either)."""
    out = {k: v.double().clone() for k, v in a.items()}
    for k, v in b.items():
        out[k] = out[k] + v.double() if k in out else v.double().clone()
    return out


def mean_std(state: Mapping[str, torch.Tensor], group: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) [d_in + d_out] of the group's statistics (float64)."""
    n = state[f"{group}/n"].double().reshape(())
    mean = state[f"{group}/sum"].double() / n
    m2 = (state[f"{group}/sumsq"].double() - n * mean * mean).clamp_min(0)
    std = (m2 / (n - 1 + EPS)).sqrt()
    return mean, std


def normalise(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x − mean) / (std + eps)`` for features [N, D]."""
    return (features.double() - mean) / (std + EPS)


def pseudo_values(keys: torch.Tensor, grads: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                  lr: float) -> torch.Tensor:
    """``V = −lr · |k̂|² ĝ`` [N, d_out] from keys [N, d_in] and gradients [N, d_out]."""
    z = normalise(torch.cat([keys.double(), grads.double()], -1), mean, std)
    k_hat, g_hat = z.split([keys.shape[1], grads.shape[1]], -1)
    return -lr * (k_hat * k_hat).sum(-1, keepdim=True) * g_hat


def solve_shift(keys: torch.Tensor, values: torch.Tensor, ridge: float = 1.0) -> torch.Tensor:
    """``ΔWᵀ = (KᵀK + ridge·I)⁻¹ KᵀV`` [d_in, d_out]: the ridge map from raw keys to pseudo-values.

    Returned in the Linear layout ``ΔW`` [d_out, d_in] (float64), so ``ΔW k ≈ v`` for cached keys.
    """
    k = keys.double()
    gram = k.T @ k + ridge * torch.eye(k.shape[1], dtype=torch.float64, device=k.device)
    return torch.linalg.solve(gram, k.T @ values.double()).T

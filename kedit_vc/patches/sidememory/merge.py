"""TIES merging of side-memory shards (Yadav et al. 2023, arXiv 2306.01708), as WISE merges
its knowledge shards (Wang et al. 2024, arXiv 2405.14768, §2.3.2).

Each shard is a task vector ``τ_i = W_side^i − W_main`` [d_out, d_in] with a weight ``w_i``:

1. **trim**: keep the ``density`` fraction of ``τ_i``'s entries with the largest magnitude
   (counted over the whole matrix, zeros included, as the reference does; a shard trained
   through a gradient mask of ratio ρ ≤ density keeps every trained entry);
2. **elect sign**: per entry, the sign of ``Σ_i w_i·τ̂_i`` (a zero sum elects +);
3. **disjoint merge**: per entry, the ``w``-weighted mean of the trimmed values whose sign is
   the elected one (entries where none agrees stay 0).

Pure functions on float32 CPU tensors: the same inputs give the same bits, so a side memory
materialised from the same live shards is the same memory (what makes a revert exact).
"""

from __future__ import annotations

from typing import Sequence

import torch


def trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """``delta`` with all but its ``⌊density·numel⌋`` largest-magnitude entries set to 0 (ties at
    the cut broken by position, lowest first); ``density >= 1`` keeps everything."""
    if density >= 1:
        return delta.clone()
    keep = int(density * delta.numel())
    flat = delta.reshape(-1)
    out = torch.zeros_like(flat)
    if keep > 0:
        # A stable descending sort by magnitude: equal magnitudes keep their order (deterministic).
        order = torch.sort(flat.abs(), descending=True, stable=True).indices[:keep]
        out[order] = flat[order]
    return out.view_as(delta)


def elect_sign(weighted: torch.Tensor) -> torch.Tensor:
    """The elected sign per entry (+1 or −1) of stacked weighted task vectors [k, ...]."""
    return torch.where(weighted.sum(dim=0) >= 0, 1.0, -1.0).to(weighted.dtype)


def ties_merge(deltas: Sequence[torch.Tensor], weights: Sequence[float], density: float) -> torch.Tensor:
    """The TIES merge of task vectors ``deltas`` (each [d_out, d_in]) with ``weights``: trimmed
    to ``density``, sign elected, and averaged (``w``-weighted) over the agreeing ones only.
    Returns a float32 tensor of the same shape."""
    if not deltas or len(deltas) != len(weights):
        raise ValueError(f"ties_merge needs one weight per task vector, got {len(deltas)} and {len(weights)}")
    if not all(w > 0 for w in weights):
        raise ValueError(f"ties_merge weights must be > 0, got {list(weights)}")
    trimmed = torch.stack([trim(d.to(torch.float32), density) for d in deltas])      # [k, d_out, d_in]
    w = torch.tensor([float(x) for x in weights], dtype=torch.float32).view(-1, *([1] * (trimmed.dim() - 1)))
    weighted = trimmed * w
    # [k, ...]; zeros never agree. The sign is read before weighting: a tiny entry times its
    # weight can underflow to 0 and would drop out of the divisor.
    agree = torch.sign(trimmed) == elect_sign(weighted)
    total = (weighted * agree).sum(dim=0)
    divisor = (w * agree).sum(dim=0)
    return torch.where(divisor > 0, total / torch.where(divisor > 0, divisor, 1.0), 0.0)

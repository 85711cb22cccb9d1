"""Summing many deltas at once: the cheap way to get HEAD's weights.

For each parameter the low-rank factors of every delta are concatenated and multiplied
once, [rows, R] @ [R, cols] with R the summed rank, instead of forming one dense matrix
per commit; dense updates are added to that product.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .core import Delta
from .errors import DeltaError
from .updates import LowRank, Update, product_dtype


def sum_updates(name: str, updates: Sequence[Update]) -> torch.Tensor:
    """The dense sum of one parameter's updates (low-rank ones as one product)."""
    shapes = {tuple(u.shape) for u in updates}
    if len(shapes) > 1:
        raise DeltaError(f"deltas disagree on the shape of {name!r}: {sorted(shapes)}")
    dtype = product_dtype(updates[0].dtype)  # 16-bit factors are multiplied in float32
    for u in updates[1:]:
        dtype = torch.promote_types(dtype, u.dtype)
    low = [u for u in updates if isinstance(u, LowRank)]
    total: torch.Tensor | None = None
    if low:
        left = torch.cat([u.left.to(dtype) for u in low], dim=1)    # [rows, R]
        right = torch.cat([u.right.to(dtype) for u in low], dim=1)  # [cols, R]
        total = left @ right.T
    for u in updates:
        if not isinstance(u, LowRank):
            total = u.value.to(dtype).clone() if total is None else total.add_(u.value.to(dtype))
    assert total is not None
    return total


def materialize(deltas: Sequence[Delta]) -> dict[str, torch.Tensor]:
    """name -> dense sum of every delta's update of that parameter (names sorted)."""
    by_name: dict[str, list[Update]] = {}
    for delta in deltas:
        for name, update in delta.updates.items():
            by_name.setdefault(name, []).append(update)
    return {name: sum_updates(name, by_name[name]) for name in sorted(by_name)}

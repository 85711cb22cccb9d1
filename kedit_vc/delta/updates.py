"""The two kinds of per-parameter update a ``Delta`` holds.

An update has the exact shape of the parameter it changes, whatever that parameter's
layout (a Llama ``down_proj.weight`` is [out, in], a GPT-2 ``Conv1D`` weight is
[in, out]): the editor that makes it knows the layout, the delta does not need to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass(frozen=True, eq=False)
class LowRank:
    """A factored update ``left @ right.T``, kept as factors until a dense form is needed.

    ``left``: [rows, r]; ``right``: [cols, r]; the dense update is [rows, cols]. A rank-one
    edit of a 1536x576 matrix stores 1536 + 576 = 2,112 numbers instead of 884,736.
    """

    left: torch.Tensor
    right: torch.Tensor
    kind: ClassVar[str] = "lowrank"

    def __post_init__(self) -> None:
        left, right = self.left, self.right
        if not (isinstance(left, torch.Tensor) and isinstance(right, torch.Tensor)):
            raise TypeError("LowRank factors must be torch tensors")
        if left.dim() != 2 or right.dim() != 2:
            raise ValueError(f"LowRank factors must be 2-D, got {tuple(left.shape)} and {tuple(right.shape)}")
        if left.shape[1] != right.shape[1] or left.shape[1] < 1:
            raise ValueError(
                f"LowRank factors must share a rank >= 1: left {tuple(left.shape)}, right {tuple(right.shape)}"
            )
        if left.dtype != right.dtype or not left.dtype.is_floating_point:
            raise ValueError(f"LowRank factors must share one floating dtype, got {left.dtype} and {right.dtype}")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.left.shape[0], self.right.shape[0])

    @property
    def rank(self) -> int:
        return self.left.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.left.dtype

    def parts(self) -> dict[str, torch.Tensor]:
        """The stored tensors by part name, in canonical order."""
        return {"left": self.left, "right": self.right}

    def dense(self) -> torch.Tensor:
        """The update as one [rows, cols] tensor, formed in at least float32 (``product_dtype``)."""
        dtype = product_dtype(self.dtype)
        return self.left.to(dtype) @ self.right.to(dtype).T

    def negated(self) -> "LowRank":
        return LowRank(-self.left, self.right)

    def frobenius_norm(self) -> float:
        """||L Rᵀ||_F from the r x r Gram matrices: trace((LᵀL)(RᵀR)), never the dense form."""
        left, right = self.left.double(), self.right.double()
        squared = float(((left.T @ left) * (right.T @ right)).sum())
        return math.sqrt(max(squared, 0.0))


@dataclass(frozen=True, eq=False)
class Dense:
    """A full update ``value`` with the parameter's shape (fine-tuning, biases, anything unfactored)."""

    value: torch.Tensor
    kind: ClassVar[str] = "dense"

    def __post_init__(self) -> None:
        if not isinstance(self.value, torch.Tensor):
            raise TypeError("Dense value must be a torch tensor")
        if not self.value.dtype.is_floating_point:
            raise ValueError(f"Dense value must be floating point, got {self.value.dtype}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def rank(self) -> None:
        """Unknown without a decomposition; summaries report ``None``."""
        return None

    @property
    def dtype(self) -> torch.dtype:
        return self.value.dtype

    def parts(self) -> dict[str, torch.Tensor]:
        return {"value": self.value}

    def dense(self) -> torch.Tensor:
        return self.value

    def negated(self) -> "Dense":
        return Dense(-self.value)

    def frobenius_norm(self) -> float:
        return float(torch.linalg.vector_norm(self.value.double()))


Update = LowRank | Dense


def product_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a factor product is formed in: float32 at least. Factors stored in 16 bits
    (a compacted squash) are exact in float32, and summing their product there keeps the
    weights what the squash measured (a 16-bit matmul would round every partial sum)."""
    return torch.promote_types(dtype, torch.float32)

#: Part names of each kind, in the order they are hashed and stored.
PARTS: dict[str, tuple[str, ...]] = {LowRank.kind: ("left", "right"), Dense.kind: ("value",)}


def update_from_parts(kind: str, parts: dict[str, torch.Tensor]) -> Update:
    """Rebuild an update from its stored parts (the inverse of ``update.parts()``)."""
    if kind == LowRank.kind:
        return LowRank(parts["left"], parts["right"])
    if kind == Dense.kind:
        return Dense(parts["value"])
    raise ValueError(f"unknown update kind {kind!r}")


def stored_bytes(update: Update) -> int:
    return sum(t.numel() * t.element_size() for t in update.parts().values())


def dense_bytes(update: Update) -> int:
    return math.prod(update.shape) * update.dtype.itemsize

"""What a delta changes, in numbers a person can read: tensors, ranks, norms, bytes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from .updates import Update, dense_bytes, stored_bytes


@dataclass(frozen=True)
class TensorSummary:
    """One updated parameter. ``rank`` is None for dense updates (not decomposed)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    rank: int | None
    norm: float
    stored_bytes: int
    dense_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "rank": self.rank,
            "norm": self.norm,
            "stored_bytes": self.stored_bytes,
            "dense_bytes": self.dense_bytes,
        }


@dataclass(frozen=True)
class DeltaSummary:
    """Per-tensor summaries in name order, and totals over them.

    ``norm`` is the Frobenius norm of all updates taken together (root of the summed
    squares); ``stored_bytes`` what the delta keeps, ``dense_bytes`` what the same change
    would take as full tensors.
    """

    tensors: tuple[TensorSummary, ...]

    @property
    def norm(self) -> float:
        return math.sqrt(sum(t.norm ** 2 for t in self.tensors))

    @property
    def stored_bytes(self) -> int:
        return sum(t.stored_bytes for t in self.tensors)

    @property
    def dense_bytes(self) -> int:
        return sum(t.dense_bytes for t in self.tensors)

    def to_json(self) -> dict[str, Any]:
        return {
            "tensors": [t.to_json() for t in self.tensors],
            "totals": {
                "tensors": len(self.tensors),
                "norm": self.norm,
                "stored_bytes": self.stored_bytes,
                "dense_bytes": self.dense_bytes,
            },
        }


def summarize(updates: Mapping[str, Update]) -> DeltaSummary:
    return DeltaSummary(
        tuple(
            TensorSummary(
                name=name,
                kind=update.kind,
                shape=tuple(update.shape),
                rank=update.rank,
                norm=update.frobenius_norm(),
                stored_bytes=stored_bytes(update),
                dense_bytes=dense_bytes(update),
            )
            for name, update in sorted(updates.items())
        )
    )

"""``Delta``: a weight change to a model, as plain data.

A delta maps ``model.state_dict()`` names to updates (``LowRank`` factors or ``Dense``
tensors) and carries a little string metadata. Editors return one; the store saves one
per commit; HEAD's weights are the base weights plus the live deltas.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import torch

from . import io
from .apply import apply_updates
from .errors import DeltaError
from .hashing import content_hash
from .summary import DeltaSummary, summarize
from .updates import Dense, LowRank, Update, product_dtype


@dataclass(frozen=True, eq=False)
class Delta:
    """Per-parameter updates plus metadata; immutable (names are kept sorted).

    ``updates``: state-dict name -> ``LowRank`` (dense = left @ right.T) or ``Dense``,
    each with the parameter's exact shape. ``meta``: small string metadata (method,
    edit ids...), saved with the delta and covered by its content hash.
    """

    updates: Mapping[str, Update]
    meta: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, update in self.updates.items():
            if not isinstance(name, str) or not isinstance(update, (LowRank, Dense)):
                raise TypeError(f"Delta updates must map str to LowRank | Dense, got {name!r}: {type(update)}")
        for key, value in self.meta.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"Delta meta must map str to str, got {key!r}: {value!r}")
        object.__setattr__(self, "updates", MappingProxyType(dict(sorted(self.updates.items()))))
        object.__setattr__(self, "meta", MappingProxyType(dict(sorted(self.meta.items()))))

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: {u.kind}{list(u.shape)}" + (f" r={u.rank}" if u.rank else "")
                          for n, u in self.updates.items())
        return f"Delta({{{parts}}}, meta={dict(self.meta)})"

    def apply(self, model: torch.nn.Module, alpha: float = 1.0) -> None:
        """Add ``alpha`` times this delta to ``model``'s weights in place.

        Every name and shape is checked first, so a delta that does not fit leaves the
        model untouched and raises ``DeltaError``.
        """
        apply_updates(model, self.updates, alpha)

    def inverse(self) -> "Delta":
        """The exact additive inverse: each low-rank ``left`` or dense ``value`` negated."""
        return Delta({name: u.negated() for name, u in self.updates.items()}, dict(self.meta))

    def compose(self, other: "Delta") -> "Delta":
        """The sum of two deltas.

        Two low-rank updates of one parameter stay low-rank (factors concatenated, ranks
        add); a sum involving a dense update is dense. ``meta`` keeps the entries both
        deltas agree on.
        """
        updates: dict[str, Update] = dict(self.updates)
        for name, b in other.updates.items():
            a = updates.get(name)
            if a is None:
                updates[name] = b
                continue
            if tuple(a.shape) != tuple(b.shape):
                raise DeltaError(f"cannot compose updates of {name!r} with shapes {a.shape} and {b.shape}")
            dtype = torch.promote_types(a.dtype, b.dtype)
            if isinstance(a, LowRank) and isinstance(b, LowRank):
                updates[name] = LowRank(
                    torch.cat([a.left.to(dtype), b.left.to(dtype)], dim=1),
                    torch.cat([a.right.to(dtype), b.right.to(dtype)], dim=1),
                )
            else:
                dtype = product_dtype(dtype)  # a product of 16-bit factors is formed in float32
                updates[name] = Dense(a.dense().to(dtype) + b.dense().to(dtype))
        meta = {k: v for k, v in self.meta.items() if other.meta.get(k) == v}
        return Delta(updates, meta)

    def dense(self, name: str) -> torch.Tensor:
        """The dense update of parameter ``name`` (same shape as the parameter)."""
        try:
            return self.updates[name].dense()
        except KeyError:
            raise DeltaError(f"the delta does not update {name!r}; it updates {', '.join(self.updates)}") from None

    def summary(self) -> DeltaSummary:
        return summarize(self.updates)

    def content_hash(self) -> str:
        """sha256 of the canonical content (names, kinds, dtypes, shapes, bytes, meta)."""
        return content_hash(self.updates, self.meta)

    def to_bytes(self) -> bytes:
        return io.to_bytes(self.updates, self.meta)

    @classmethod
    def from_bytes(cls, data: bytes, expected_hash: str | None = None, source: str = "delta") -> "Delta":
        updates, meta, _ = io.from_bytes(data, expected_hash, source)
        return cls(updates, meta)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a safetensors file atomically (temporary file + rename)."""
        io.save(self.updates, self.meta, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, expected_hash: str | None = None) -> "Delta":
        """Read a delta file written by ``save``; refuse it if malformed, altered, or not
        the delta with ``expected_hash``."""
        updates, meta, _ = io.load(path, expected_hash)
        return cls(updates, meta)

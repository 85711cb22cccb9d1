"""``CodebookPatch``: what one commit adds to the codebook at one module, as plain data.

A codebook (GRACE, Hartvigsen et al. 2023, arXiv 2211.11031) sits at the output of one
module (an MLP down-projection): for each token, the module's input ``h`` [d_in] is looked up
among the keys; if the nearest key lies within its deferral radius, the module's output at
that token is replaced by the key's value [d_out]; otherwise the output is left as it is.

One patch holds the entries one commit added (``ids``, ``keys`` [n, d_in], ``values``
[n, d_out], ``radii`` [n], ``labels``: target token ids) and the changes it made to entries
of earlier commits (``adjusted_ids``, ``adjusted_radii`` [m], ``adjusted_values`` [m, d_out]):
GRACE's radius expansion and splitting are recorded as the new radius (and value) of the
earlier entry, owned by the commit that made the change. The live codebook is therefore a
pure function of the live patches (``live.live_entries``), which is what makes a revert
exact: a reverted commit's entries and changes are simply not live.

File: safetensors (tensors ``keys``, ``values``, ``radii``, ``adjusted_radii``,
``adjusted_values``, all float32) whose metadata holds ``format`` = ``kvc-codebook``,
``format_version``, ``content_hash`` and ``info`` (JSON: module, dims, ids, labels,
adjusted ids, meta). The content hash covers the canonical JSON and the tensors' bytes, so a
changed bit anywhere is refused on load.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import torch

from kedit_vc.delta.hashing import tensor_bytes
from kedit_vc.patches import envelope
from kedit_vc.patches.registry import PatchError

FORMAT = "kvc-codebook"
FORMAT_VERSION = "1"
HASH_FORMAT = b"kvc-codebook-hash/1\0"
TENSORS = ("keys", "values", "radii", "adjusted_radii", "adjusted_values")


def entry_id(module: str, key: torch.Tensor, label: tuple[int, ...]) -> str:
    """A stable id for an entry: sha256 of its module, key bytes and label (16 hex digits)."""
    digest = hashlib.sha256(f"{module}|{list(label)}|".encode())
    digest.update(tensor_bytes(key.detach().float().cpu()))
    return digest.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class CodebookPatch:
    """Entries added at ``module`` and radius/value changes to earlier entries (see module doc)."""

    module: str
    key_dim: int
    value_dim: int
    ids: tuple[str, ...]
    keys: torch.Tensor            # [n, key_dim] float32
    values: torch.Tensor          # [n, value_dim] float32
    radii: torch.Tensor           # [n] float32
    labels: tuple[tuple[int, ...], ...]
    adjusted_ids: tuple[str, ...] = ()
    adjusted_radii: torch.Tensor = field(default_factory=lambda: torch.zeros(0))             # [m]
    adjusted_values: torch.Tensor | None = None                                                # [m, value_dim]
    meta: Mapping[str, str] = field(default_factory=dict)

    kind = "codebook"

    def __post_init__(self) -> None:
        n, m = len(self.ids), len(self.adjusted_ids)
        adjusted_values = self.adjusted_values
        if adjusted_values is None:
            adjusted_values = torch.zeros(0, self.value_dim)
        tensors = {"keys": (self.keys, (n, self.key_dim)), "values": (self.values, (n, self.value_dim)),
                   "radii": (self.radii, (n,)), "adjusted_radii": (self.adjusted_radii, (m,)),
                   "adjusted_values": (adjusted_values, (m, self.value_dim))}
        for name, (tensor, shape) in tensors.items():
            if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
                got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
                raise PatchError(f"codebook {name} must have shape {shape}, got {got}")
            object.__setattr__(self, name, tensor.detach().to("cpu", torch.float32).contiguous())
        if len(self.labels) != n or len(set(self.ids)) != n or len(set(self.adjusted_ids)) != m:
            raise PatchError("codebook ids must be distinct and one label per entry")
        if bool((self.radii < 0).any()) or bool((self.adjusted_radii < 0).any()):
            raise PatchError("codebook radii must be >= 0")
        object.__setattr__(self, "ids", tuple(str(i) for i in self.ids))
        object.__setattr__(self, "adjusted_ids", tuple(str(i) for i in self.adjusted_ids))
        object.__setattr__(self, "labels", tuple(tuple(int(t) for t in label) for label in self.labels))
        object.__setattr__(self, "meta", MappingProxyType(dict(sorted(self.meta.items()))))

    def __repr__(self) -> str:
        return (f"CodebookPatch({self.module}, +{len(self.ids)} entries, {len(self.adjusted_ids)} radius changes, "
                f"d={self.key_dim}->{self.value_dim})")

    # -- content --------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The JSON part of the file (everything but the tensors)."""
        return {"module": self.module, "key_dim": self.key_dim, "value_dim": self.value_dim,
                "ids": list(self.ids), "labels": [list(label) for label in self.labels],
                "adjusted_ids": list(self.adjusted_ids), "meta": dict(self.meta)}

    def tensors(self) -> dict[str, torch.Tensor]:
        assert self.adjusted_values is not None
        return {"keys": self.keys, "values": self.values, "radii": self.radii,
                "adjusted_radii": self.adjusted_radii, "adjusted_values": self.adjusted_values}

    def content_hash(self) -> str:
        """sha256 of the canonical JSON info, then each tensor's name, shape and bytes."""
        return envelope.tensors_hash(HASH_FORMAT, self.info(), self.tensors())

    def to_bytes(self) -> bytes:
        return envelope.encode(FORMAT, FORMAT_VERSION, self.info(), self.tensors(), self.content_hash())

    @classmethod
    def from_bytes(cls, data: bytes, expected_hash: str | None = None, source: str = "codebook") -> "CodebookPatch":
        """Parse and verify a codebook file; ``PatchError`` when malformed, altered or unexpected."""
        try:
            info, tensors, recorded = envelope.decode(data, FORMAT, FORMAT_VERSION, TENSORS)
            patch = cls(module=str(info["module"]), key_dim=int(info["key_dim"]), value_dim=int(info["value_dim"]),
                        ids=tuple(info["ids"]), labels=tuple(tuple(x) for x in info["labels"]),
                        adjusted_ids=tuple(info["adjusted_ids"]), meta=dict(info["meta"]),
                        **{name: tensors[name] for name in TENSORS})
        except PatchError as error:
            raise PatchError(f"{source} is not a valid kvc codebook: {error}") from None
        except Exception as error:  # noqa: BLE001 - safetensors, json and validation errors alike
            raise PatchError(f"{source} is not a valid kvc codebook file: {error}") from None
        envelope.check_hash(patch.content_hash(), recorded, expected_hash, source, "codebook")
        return patch

    # -- against a model ------------------------------------------------------------

    def check_model(self, model: torch.nn.Module) -> None:
        """Refuse a model without ``module`` or whose module's widths are not the codebook's."""
        dims = module_dims(model, self.module)
        if dims != (self.key_dim, self.value_dim):
            raise PatchError(f"a codebook at {self.module} maps width {self.key_dim} to {self.value_dim}, but this "
                             f"model's module maps {dims[0]} to {dims[1]}; was it made for another model?")

    def describe(self) -> dict[str, Any]:
        """What ``kvc show`` / ``kvc diff`` print: layer, entries added, their radii, changes."""
        return {"kind": self.kind, "module": self.module, "entries_added": len(self.ids),
                "radii": [round(float(r), 4) for r in self.radii],
                "radius_changes": [{"entry": i, "radius": round(float(r), 4)}
                                   for i, r in zip(self.adjusted_ids, self.adjusted_radii)],
                "key_dim": self.key_dim, "value_dim": self.value_dim}


def module_dims(model: torch.nn.Module, path: str) -> tuple[int, int]:
    """(input width, output width) of the linear module at ``path``; ``PatchError`` if none."""
    try:
        module = model.get_submodule(path)
    except AttributeError:
        raise PatchError(f"this model has no module {path!r}; was the patch made for another model?") from None
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    weight = getattr(module, "weight", None)
    if hasattr(module, "nf") and isinstance(weight, torch.Tensor) and weight.dim() == 2:  # GPT-2 Conv1D [in, out]
        return int(weight.shape[0]), int(weight.shape[1])
    raise PatchError(f"module {path!r} is not a linear layer a codebook can sit on")

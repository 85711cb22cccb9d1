"""Carried method state: named tensors a commit adds to a running sum (e.g. UltraEdit's
per-layer key sums and counts), stored per commit in ``carried.safetensors``.

The state at a revision is the elementwise sum of the carried tensors of the commits live
there (see ``history``), accumulated in float64 and returned in the stored dtype, so
reverting a commit removes its contribution exactly. A revert stores the negation of its
target's tensors, so that a revert of a revert (which is live) brings the target's back.
The manifest records the names and a content hash (``carried_hash``) that ``kvc fsck``
checks. torch is imported inside the functions, so reading manifests stays light.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from kedit_vc.errors import StoreError

if TYPE_CHECKING:
    import torch

FORMAT = "kvc-carried"
HASH_FORMAT = b"kvc-carried-hash/1\0"

Carried = Mapping[str, "torch.Tensor"]


def _canonical(carried: Carried) -> "dict[str, torch.Tensor]":
    """Detached contiguous CPU copies, sorted by name."""
    return {name: carried[name].detach().to("cpu").contiguous().clone() for name in sorted(carried)}


def carried_hash(carried: Carried) -> str:
    """sha256 of the names, dtypes, shapes and bytes (independent of file layout)."""
    from kedit_vc.delta.hashing import tensor_bytes

    digest = hashlib.sha256(HASH_FORMAT)
    for name, tensor in _canonical(carried).items():
        header = {"name": name, "dtype": str(tensor.dtype).removeprefix("torch."), "shape": list(tensor.shape)}
        digest.update(json.dumps(header, sort_keys=True).encode() + b"\0")
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()


def manifest_entry(carried: Carried) -> dict[str, Any]:
    """What the manifest records about a commit's carried tensors."""
    return {"names": sorted(carried), "hash": carried_hash(carried)}


def carried_to_bytes(carried: Carried) -> bytes:
    """safetensors bytes holding each carried tensor under its own name."""
    from safetensors.torch import save

    return save(_canonical(carried), metadata={"format": FORMAT})


def carried_from_bytes(data: bytes, source: str, entry: Mapping[str, Any] | None = None) -> "dict[str, torch.Tensor]":
    """Decode a carried file; with the manifest's ``entry``, also check its names and hash."""
    from safetensors.torch import load

    try:
        tensors = dict(sorted(load(data).items()))
    except Exception as error:  # noqa: BLE001 - safetensors' own errors: torn, truncated, not safetensors
        raise StoreError(f"{source}: unreadable carried-state file ({error})") from None
    if entry is not None:
        if list(tensors) != list(entry.get("names") or []):
            raise StoreError(f"{source}: its tensors {list(tensors)} are not the manifest's {entry.get('names')}")
        if carried_hash(tensors) != entry.get("hash"):
            raise StoreError(f"{source}: its content does not match the manifest's hash (damaged)")
    return tensors


def negated(carried: Carried) -> "dict[str, torch.Tensor]":
    """Each tensor negated (exact in floating point): what a revert carries."""
    return {name: -tensor for name, tensor in _canonical(carried).items()}


def summed(parts: Iterable[Carried]) -> "dict[str, torch.Tensor]":
    """The elementwise sum per name, accumulated in float64, returned in the parts' promoted dtype.

    Raises ``StoreError`` when two parts give one name different shapes.
    """
    import torch

    totals: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for part in parts:
        for name, tensor in part.items():
            if name not in totals:
                totals[name] = tensor.detach().to("cpu", torch.float64).clone()
                dtypes[name] = tensor.dtype
                continue
            if tuple(tensor.shape) != tuple(totals[name].shape):
                raise StoreError(f"carried tensor {name!r} has shape {tuple(tensor.shape)} in one commit "
                                 f"and {tuple(totals[name].shape)} in another")
            totals[name] += tensor.detach().to("cpu", torch.float64)
            dtypes[name] = torch.promote_types(dtypes[name], tensor.dtype)
    return {name: totals[name].to(dtypes[name]) for name in sorted(totals)}

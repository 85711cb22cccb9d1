"""The file envelope the non-delta patch kinds share, so each kind only says what it holds.

A patch file is safetensors whose metadata holds ``format``, ``format_version``,
``content_hash`` and ``info`` (the kind's JSON). The content hash covers the canonical JSON
and then, tensor by tensor, its name (and dtype where the kind records it), shape and bytes,
so one changed bit anywhere is refused on load. Nothing here is unpickled.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

import torch

from kedit_vc.delta.hashing import tensor_bytes
from kedit_vc.delta.io import storable
from kedit_vc.patches.registry import PatchError


def tensors_hash(hash_format: bytes, info: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], *,
                 dtypes: bool = False) -> str:
    """sha256 of ``hash_format``, the canonical JSON ``info``, then each tensor's name
    (``|dtype`` when ``dtypes``), shape and bytes, in the mapping's order."""
    digest = hashlib.sha256(hash_format)
    digest.update(json.dumps(dict(info), sort_keys=True).encode() + b"\0")
    for name, tensor in tensors.items():
        label = f"{name}|{tensor.dtype}|{list(tensor.shape)}" if dtypes else f"{name}|{list(tensor.shape)}"
        digest.update(f"{label}\0".encode())
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()


def encode(fmt: str, version: str, info: Mapping[str, Any], tensors: Mapping[str, torch.Tensor],
           content_hash: str, *, ensure_ascii: bool = True) -> bytes:
    """The file's bytes: ``tensors`` as safetensors, the rest in its metadata."""
    from safetensors.torch import save

    metadata = {"format": fmt, "format_version": version, "content_hash": content_hash,
                "info": json.dumps(dict(info), sort_keys=True, ensure_ascii=ensure_ascii)}
    return save(storable(dict(tensors)), metadata=metadata)


def decode(data: bytes, fmt: str, version: str, names: tuple[str, ...] | None
           ) -> tuple[dict[str, Any], dict[str, torch.Tensor], str | None]:
    """``(info, tensors, recorded hash)`` of a file of format ``fmt`` v``version``; ``names``:
    the tensors it must hold exactly (None: none at all). Raises ``ValueError`` (or a
    safetensors/json error) on anything else; the caller words it for its kind."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size].decode("utf-8"))
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != fmt or metadata.get("format_version") != version:
        raise ValueError(f"not a {fmt} v{version} file")
    info = json.loads(metadata["info"])
    if names is None:
        if set(header) - {"__metadata__"}:
            raise ValueError("this kind of file holds no tensors")
        return info, {}, metadata.get("content_hash")
    from safetensors.torch import load

    tensors = load(data)
    if set(tensors) != set(names):
        raise ValueError(f"tensors {sorted(tensors)}, expected {sorted(names)}")
    return info, tensors, metadata.get("content_hash")


def check_hash(actual: str, recorded: str | None, expected: str | None, source: str, what: str) -> None:
    """Refuse a file whose content does not hash to what it records, or not to ``expected``
    (the hash its commit's manifest names): ``PatchError`` saying what to do."""
    if actual != recorded:
        raise PatchError(f"{source} was altered or is corrupt: its content hashes to {actual[:12]}, but the "
                         f"file records {str(recorded)[:12]}; restore it from the store or re-run the edit")
    if expected is not None and actual != expected:
        raise PatchError(f"{source} is not the expected {what}: content hash {actual[:12]}, "
                         f"expected {expected[:12]}")

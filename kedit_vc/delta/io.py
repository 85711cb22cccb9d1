"""Delta files: safetensors with a small, checked layout (never pickle).

Layout: one tensor per stored part, named ``"<parameter name>::<part>"`` with part
``left``/``right`` (low-rank) or ``value`` (dense). The header metadata holds
``format`` = ``kvc-delta``, ``format_version``, ``content_hash`` (see ``hashing``) and
``meta`` (the delta's own string metadata as sorted JSON). Loading re-checks the
structure and recomputes the hash, so a truncated or altered file is refused.
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from kedit_vc.fsio import atomic_write_bytes

from .errors import DeltaError
from .hashing import content_hash
from .updates import PARTS, Update, update_from_parts

FORMAT = "kvc-delta"
FORMAT_VERSION = "1"
SEPARATOR = "::"


def storable(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, detached copies safetensors accepts (no two sharing storage)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in tensors.items():
        t = tensor.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


def to_bytes(updates: Mapping[str, Update], meta: Mapping[str, str]) -> bytes:
    """The safetensors bytes of a delta (metadata carries the content hash)."""
    tensors = storable(
        {f"{name}{SEPARATOR}{part}": t for name, u in updates.items() for part, t in u.parts().items()}
    )
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "content_hash": content_hash(updates, meta),
        "meta": json.dumps(dict(sorted(meta.items())), sort_keys=True),
    }
    return st_save(tensors, metadata=metadata)


def save(updates: Mapping[str, Update], meta: Mapping[str, str], path: str | os.PathLike[str]) -> None:
    atomic_write_bytes(path, to_bytes(updates, meta))


def _header_metadata(data: bytes) -> dict[str, str]:
    if len(data) < 8:
        raise ValueError("file shorter than a safetensors header")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ValueError("header length exceeds the file")
    header = json.loads(data[8 : 8 + size].decode("utf-8"))
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict):
        raise ValueError("no metadata in the header")
    return metadata


def _parse_meta(text: str) -> dict[str, str]:
    meta = json.loads(text)
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ValueError("meta must be a JSON object of strings")
    return meta


def group_parts(tensors: Mapping[str, torch.Tensor]) -> dict[str, Update]:
    """Updates from tensors named ``<parameter>::<part>``; ValueError if a name or set of parts is wrong."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        name, sep, part = key.rpartition(SEPARATOR)
        if not sep or not name:
            raise ValueError(f"tensor {key!r} is not named '<parameter>{SEPARATOR}<part>'")
        grouped.setdefault(name, {})[part] = tensor
    updates: dict[str, Update] = {}
    for name, parts in grouped.items():
        kinds = [kind for kind, names in PARTS.items() if set(names) == set(parts)]
        if not kinds:
            raise ValueError(f"parameter {name!r} has parts {sorted(parts)}, expected one of {list(PARTS.values())}")
        updates[name] = update_from_parts(kinds[0], parts)
    return updates


def from_bytes(
    data: bytes, expected_hash: str | None = None, source: str = "delta"
) -> tuple[dict[str, Update], dict[str, str], str]:
    """Parse and verify delta bytes; returns (updates, meta, content hash).

    Raises ``DeltaError`` when the bytes are not a kvc delta, when the recomputed hash
    differs from the recorded one (the file was altered), or from ``expected_hash``.
    """
    try:
        metadata = _header_metadata(data)
        if metadata.get("format") != FORMAT:
            raise ValueError(f"format is {metadata.get('format')!r}, not {FORMAT!r}")
        if metadata.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported format_version {metadata.get('format_version')!r}")
        meta = _parse_meta(metadata.get("meta", "{}"))
        updates = group_parts(st_load(data))
    except DeltaError:
        raise
    except Exception as error:  # noqa: BLE001 - safetensors, json and validation errors alike
        raise DeltaError(f"{source} is not a valid kvc delta file: {error}") from None
    actual = content_hash(updates, meta)
    recorded = metadata.get("content_hash")
    if actual != recorded:
        raise DeltaError(
            f"{source} was altered or is corrupt: its content hashes to {actual[:12]}, "
            f"but the file records {str(recorded)[:12]}; restore it from the store or re-run the edit"
        )
    if expected_hash is not None and actual != expected_hash:
        raise DeltaError(
            f"{source} is not the expected delta: content hash {actual[:12]}, expected {expected_hash[:12]}"
        )
    return updates, meta, actual


def load(
    path: str | os.PathLike[str], expected_hash: str | None = None
) -> tuple[dict[str, Update], dict[str, str], str]:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise DeltaError(f"cannot read delta file {os.fspath(path)}: {error.strerror}") from None
    return from_bytes(data, expected_hash, source=os.fspath(path))

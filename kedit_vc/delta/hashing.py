"""A content hash of a delta that does not depend on how its file was written.

safetensors does not guarantee the order of its header keys, so hashing file bytes would
give one delta several hashes. The hash covers canonical content instead: a format tag,
the sorted metadata, then for each parameter name in sorted order its kind and, per part,
dtype, shape and the raw little-endian bytes of the contiguous CPU tensor.
"""

from __future__ import annotations

import hashlib
import json
from typing import Mapping

import torch

from .updates import Update

HASH_FORMAT = b"kvc-delta-hash/1\0"


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor in row-major order (any dtype, bfloat16 included)."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data  # the array's buffer, no copy


def content_hash(updates: Mapping[str, Update], meta: Mapping[str, str]) -> str:
    """sha256 hex digest of the canonical content of ``updates`` and ``meta``."""
    digest = hashlib.sha256(HASH_FORMAT)
    digest.update(json.dumps(dict(sorted(meta.items())), sort_keys=True).encode() + b"\0")
    for name in sorted(updates):
        update = updates[name]
        parts = update.parts()
        header = {
            "name": name,
            "kind": update.kind,
            "parts": [[part, str(t.dtype).removeprefix("torch."), list(t.shape)] for part, t in parts.items()],
        }
        digest.update(json.dumps(header, sort_keys=True).encode() + b"\0")
        for tensor in parts.values():
            digest.update(tensor_bytes(tensor))
    return digest.hexdigest()

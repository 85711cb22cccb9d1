"""A stable fingerprint of a model's base weights: hash of content, not of files.

Two loads of the same weights give the same fingerprint whatever the file format or
the order of tensors in it; any change to any weight changes it. The store uses it to
refuse a delta made for another base model.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

import torch


def fingerprint_state_dict(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over sorted (name, dtype, shape, bytes); tied weights are hashed once."""
    digest = hashlib.sha256()
    seen: set[int] = set()
    for name in sorted(state):
        tensor = state[name]
        if tensor.device.type == "meta":
            continue
        ptr = tensor.untyped_storage().data_ptr()
        digest.update(name.encode())
        digest.update(f"{tensor.dtype}:{tuple(tensor.shape)}".encode())
        if ptr in seen and ptr != 0:
            digest.update(b"tied")
            continue
        seen.add(ptr)
        data = tensor.detach().contiguous().cpu()
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return "sha256:" + digest.hexdigest()[:32]

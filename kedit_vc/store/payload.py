"""Encoding the files of a commit's tree (JSON, keys) and decoding them back.

torch is imported inside the functions that need tensors, so reading manifests and logs
stays light.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

from kedit_vc.errors import StoreError

if TYPE_CHECKING:
    import torch

KEY_PREFIX = "layer."


def keys_to_bytes(keys: "Mapping[int, torch.Tensor]") -> bytes:
    """safetensors bytes holding one tensor ``layer.<i>`` [n, d_in] per edited layer."""
    from safetensors.torch import save

    tensors = {f"{KEY_PREFIX}{int(layer)}": t.detach().to("cpu").contiguous().clone() for layer, t in keys.items()}
    return save(tensors, metadata={"format": "kvc-keys"})


def keys_from_bytes(data: bytes, source: str) -> "dict[int, torch.Tensor]":
    from safetensors.torch import load

    try:
        tensors = load(data)
        return {int(name.removeprefix(KEY_PREFIX)): t for name, t in sorted(tensors.items())}
    except Exception as error:  # noqa: BLE001 - safetensors' errors: torn, truncated, not safetensors
        raise StoreError(f"{source}: unreadable keys file ({error})") from None


def json_from_bytes(data: bytes, source: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise StoreError(f"{source} is not valid JSON ({error}); run `kvc fsck`") from None

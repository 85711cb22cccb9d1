"""Encoding the files of a commit's tree (JSON, keys, carried state) and decoding them back.

torch is imported inside the functions that need tensors, so reading manifests and logs
stays light.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

from kedit_vc.errors import StoreError

from .layout import CARRIED_FILE, KEYS_FILE, MANIFEST_FILE, METRICS_FILE, PLAN_FILE, SPEC_FILE, STORE_FILE
from .manifest import CommitInput, dumps

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


def commit_files(payload: CommitInput, manifest: Mapping[str, Any], store_json: bytes) -> dict[str, bytes]:
    """The files of a commit's tree besides its delta: manifest, store config (``store_json``,
    the parent's), metrics, and the spec, plan, keys and carried state when the payload has them."""
    from .carried import carried_to_bytes

    files = {MANIFEST_FILE: dumps(dict(manifest)), STORE_FILE: store_json, METRICS_FILE: dumps(dict(payload.metrics))}
    if payload.spec_text is not None:
        files[SPEC_FILE] = payload.spec_text.encode("utf-8")
    if payload.plan is not None:
        files[PLAN_FILE] = dumps(dict(payload.plan))
    if payload.keys:
        files[KEYS_FILE] = keys_to_bytes(payload.keys)
    if payload.carried:
        files[CARRIED_FILE] = carried_to_bytes(payload.carried)
    return files

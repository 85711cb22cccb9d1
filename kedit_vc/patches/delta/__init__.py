"""Kind ``delta``: a weight change (``kedit_vc.delta.Delta``), stored exactly as before patch
kinds existed (``delta.safetensors`` or a pointer to ``objects/``), so old stores load."""

from __future__ import annotations

from typing import Any

from kedit_vc.patches.registry import PatchKind, register_kind


def _decode(data: bytes, expected_hash: str | None, source: str) -> Any:
    from kedit_vc.delta import Delta

    return Delta.from_bytes(data, expected_hash=expected_hash, source=source)


register_kind(PatchKind(name="delta", decode=_decode, weights=True,
                        summary="low-rank or dense updates added to the weights"))

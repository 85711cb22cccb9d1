"""Kind ``codebook``: entries (key, value, radius, label) at one module's output (GRACE)."""

from __future__ import annotations

from typing import Any

from kedit_vc.patches.registry import PatchKind, register_kind


def _decode(data: bytes, expected_hash: str | None, source: str) -> Any:
    from .core import CodebookPatch

    return CodebookPatch.from_bytes(data, expected_hash=expected_hash, source=source)


def _attach(model: Any, patches: Any) -> list[Any]:
    from .live import attach

    return attach(model, list(patches))


register_kind(PatchKind(name="codebook", decode=_decode, attach=_attach,
                        summary="a codebook of (key, value, radius) entries replacing one module's output"))

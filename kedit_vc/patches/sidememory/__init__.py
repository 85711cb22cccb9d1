"""Kind ``sidememory``: a side copy of one MLP value matrix with an activation router (WISE)."""

from __future__ import annotations

from typing import Any

from kedit_vc.patches.registry import PatchKind, register_kind


def _decode(data: bytes, expected_hash: str | None, source: str) -> Any:
    from .core import SideMemoryPatch

    return SideMemoryPatch.from_bytes(data, expected_hash=expected_hash, source=source)


def _attach(model: Any, patches: Any) -> list[Any]:
    from .live import attach

    return attach(model, list(patches))


register_kind(PatchKind(name="sidememory", decode=_decode, attach=_attach,
                        summary="a side copy of one MLP value matrix, used where its activation passes a threshold"))

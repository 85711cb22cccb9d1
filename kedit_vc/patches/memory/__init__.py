"""Kind ``memory``: edited facts kept as text, put in front of queries (IKE, MemPrompt) or read by
a question-answering loop (MeLLo)."""

from __future__ import annotations

from typing import Any

from kedit_vc.patches.registry import PatchKind, register_kind


def _decode(data: bytes, expected_hash: str | None, source: str) -> Any:
    from .core import MemoryPatch

    return MemoryPatch.from_bytes(data, expected_hash=expected_hash, source=source)


def _attach(model: Any, patches: Any) -> list[Any]:
    from .wrap import attach

    return attach(model, list(patches))


register_kind(PatchKind(name="memory", decode=_decode, attach=_attach, while_editing=False,
                        summary="an edit memory of facts as text, put in front of the queries they apply to"))

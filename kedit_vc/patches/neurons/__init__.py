"""Kind ``neurons``: key-value neurons added beside one block's MLP (T-Patcher)."""

from __future__ import annotations

from typing import Any

from kedit_vc.patches.registry import PatchKind, register_kind


def _decode(data: bytes, expected_hash: str | None, source: str) -> Any:
    from .core import NeuronPatch

    return NeuronPatch.from_bytes(data, expected_hash=expected_hash, source=source)


def _attach(model: Any, patches: Any) -> list[Any]:
    from .live import attach

    return attach(model, list(patches))


register_kind(PatchKind(name="neurons", decode=_decode, attach=_attach,
                        summary="ReLU key-value neurons added to one block's MLP output (T-Patcher)"))

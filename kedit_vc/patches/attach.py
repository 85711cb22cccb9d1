"""Putting a revision's non-weight patches on a model, and taking them off again.

Weight deltas are added to the parameters (``ops.weights.Weights``); every other kind is
attached through its registry entry (``PatchKind.attach``: forward hooks for codebooks).
``SidePatches`` remembers what is attached to one model so that moving to another revision
replaces it, and lets an editor read what is live on the model it was handed
(``attached(model)``).
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch

from .registry import require_kind

_ATTACHED: "weakref.WeakKeyDictionary[torch.nn.Module, SidePatches]" = weakref.WeakKeyDictionary()


class SidePatches:
    """The non-weight patches attached to ``model``, oldest first."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.patches: list[Any] = []
        self._handles: list[Any] = []
        _ATTACHED[model] = self

    def clear(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self.patches = [], []

    def set(self, patches: Sequence[Any]) -> None:
        """Detach everything, then attach ``patches`` (each checked against the model first)."""
        self.clear()
        by_kind: dict[str, list[Any]] = {}
        for patch in patches:
            by_kind.setdefault(patch.kind, []).append(patch)
        handles: list[Any] = []
        try:
            for kind, group in sorted(by_kind.items()):
                attach = require_kind(kind).attach
                if attach is None:
                    raise ValueError(f"patch kind {kind!r} is applied to the weights, not attached")
                handles += attach(self.model, group)
        except BaseException:
            for handle in handles:
                handle.remove()
            raise
        self._handles, self.patches = handles, list(patches)

    @contextmanager
    def editing(self) -> Iterator[None]:
        """Within: only the patches whose kind stays attached while an editor runs
        (``PatchKind.while_editing``); after: all of them again."""
        kept = self.patches
        editing = [p for p in kept if require_kind(p.kind).while_editing]
        if len(editing) == len(kept):
            yield
            return
        self.set(editing)
        try:
            yield
        finally:
            self.set(kept)

    def add(self, patches: Sequence[Any]) -> None:
        """Attach ``patches`` after the ones already attached."""
        self.set(self.patches + list(patches))


def side_patches(model: torch.nn.Module) -> SidePatches:
    """The ``SidePatches`` of ``model`` (created, empty, on first use)."""
    found = _ATTACHED.get(model)
    return found if found is not None else SidePatches(model)


def attached(model: torch.nn.Module, kind: str | None = None) -> list[Any]:
    """The non-weight patches now attached to ``model`` (of ``kind``), oldest first."""
    found = _ATTACHED.get(model)
    patches = found.patches if found is not None else []
    return [p for p in patches if kind is None or p.kind == kind]

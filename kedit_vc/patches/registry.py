"""The patch-kind registry: what a commit's payload may be, by name (no torch import).

A commit records one weight ``Delta`` (kind ``delta``, stored as it always was) and, beside
it, any number of other patches: a module added at a layer that changes its output without
touching a weight (kind ``codebook``: GRACE). Each kind is one folder
``kedit_vc/patches/<kind>/`` whose ``__init__`` calls ``register_kind``. The store asks this
module to decode a patch file by its recorded kind; it knows nothing of editing methods.

Every kind's patch object provides (duck-typed, see ``Patch``): ``kind``, ``content_hash()``,
``to_bytes()`` (safetensors with JSON metadata, never pickle), ``describe()`` (a JSON-able
summary for ``kvc show`` / ``kvc diff``) and ``check_model(model)`` (refuse a model it was not
made for).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

from kedit_vc.errors import KvcError

if TYPE_CHECKING:
    import torch


class PatchError(KvcError):
    """A patch file that is malformed or altered, or a patch that does not fit the model."""


class Patch(Protocol):
    """What every patch kind's objects provide."""

    kind: str

    def content_hash(self) -> str: ...

    def to_bytes(self) -> bytes: ...

    def describe(self) -> Mapping[str, Any]: ...

    def check_model(self, model: "torch.nn.Module") -> None: ...


@dataclass(frozen=True)
class PatchKind:
    """One kind: ``decode(data, expected_hash, source)`` reads and verifies a patch file
    (raising ``PatchError`` or the kind's own ``KvcError``); ``summary``: one line for docs.
    ``weights``: whether it is applied by adding to the weights (only ``delta``);
    ``attach(model, patches)``: for the other kinds, put the live ``patches`` of this kind
    (oldest first) on ``model`` and return handles whose ``remove()`` takes them off again.
    ``while_editing``: whether the patches stay attached while an editor runs on the model
    (a codebook does: later edits see it; an edit memory does not: it is the model's context,
    and an editor's hooks must see the caller's positions)."""

    name: str
    decode: Callable[[bytes, str | None, str], Any]
    summary: str
    weights: bool = False
    attach: Callable[[Any, Sequence[Any]], list[Any]] | None = None
    while_editing: bool = True


_KINDS: dict[str, PatchKind] = {}


def register_kind(kind: PatchKind) -> PatchKind:
    """Register ``kind`` under its (lowercase) name; a second kind of that name is refused."""
    if kind.name != kind.name.lower() or not kind.name.isidentifier():
        raise ValueError(f"patch kind {kind.name!r}: use a lowercase identifier")
    old = _KINDS.get(kind.name)
    if old is not None and old.decode.__module__ != kind.decode.__module__:
        raise ValueError(f"patch kind {kind.name!r} is already registered by {old.decode.__module__}")
    _KINDS[kind.name] = kind
    return kind


def _discover() -> None:
    import kedit_vc.patches as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.ispkg:
            importlib.import_module(f"{package.__name__}.{module.name}")


def kind_names() -> list[str]:
    _discover()
    return sorted(_KINDS)


def require_kind(name: str) -> PatchKind:
    """The kind registered as ``name``; ``PatchError`` naming the known kinds otherwise."""
    _discover()
    kind = _KINDS.get(name)
    if kind is None:
        raise PatchError(f"unknown patch kind {name!r} (this kedit_vc knows {', '.join(sorted(_KINDS))}); "
                         "upgrade kedit_vc to read this store")
    return kind


def decode(kind: str, data: bytes, expected_hash: str | None, source: str) -> Any:
    """The patch of ``kind`` in ``data``, verified against its recorded and ``expected_hash``."""
    return require_kind(kind).decode(data, expected_hash, source)

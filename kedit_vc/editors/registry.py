"""The method registry: every editing method, by lowercase name (no torch import).

A method is one folder ``kedit_vc/editors/<method>/`` whose ``__init__`` calls
``register_method(MethodSpec(...))``. Discovery imports every subpackage of
``kedit_vc.editors`` (``common`` holds shared machinery, not a method) and the
``kedit_vc.methods`` entry points of installed third-party packages, so a new folder is
found with no other edit. The spec checker, ``kvc compile``, the CLI's ``--method``
options and ``ops`` all ask this module, and ``require_method``/``unknown_method`` are
the one check of a method name.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields, is_dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from kedit_vc.errors import UsageError

if TYPE_CHECKING:
    from kedit_vc.editors.base import Editor

#: Entry-point group through which installed packages add methods: each entry point
#: names a ``MethodSpec`` or a module whose import registers one.
ENTRY_POINT_GROUP = "kedit_vc.methods"
#: Subpackages of ``kedit_vc.editors`` that are not methods.
NOT_METHODS = frozenset({"common"})


@dataclass(frozen=True)
class MethodSpec:
    """What the rest of kedit_vc knows of a method.

    ``factory()`` returns the ``Editor`` (it imports the torch-heavy algorithm lazily);
    ``hparams_class`` is a frozen dataclass whose every field has a default and
    ``metadata["help"]``; ``summary`` is one line for ``--help`` and docs.
    ``resolve(model, hparams)`` fills model-dependent defaults (may import torch lazily);
    ``check(hparams)`` returns the method's own problems with a setting (empty: fine).
    ``candidate_rank``: place among ``auto``'s default candidates (lower first, ties in
    score go to the lower); None: not tried unless named.
    """

    name: str
    hparams_class: type
    factory: Callable[[], Editor]
    summary: str
    resolve: Callable[[Any, Any], Any] | None = None
    check: Callable[[Any], list[str]] | None = None
    candidate_rank: int | None = None


_METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Register ``spec`` under its (lowercase) name; a second method of that name is refused."""
    if spec.name != spec.name.lower() or not spec.name.isidentifier():
        raise ValueError(f"method name {spec.name!r}: use a lowercase identifier")
    params = vars(spec.hparams_class).get("__dataclass_params__")  # set by @dataclass on the class itself
    if not is_dataclass(spec.hparams_class) or params is None or not params.frozen:
        raise ValueError(f"method {spec.name!r}: hyperparameters must be a frozen dataclass")
    missing = [f.name for f in fields(spec.hparams_class) if "help" not in f.metadata]
    if missing:
        raise ValueError(f"method {spec.name!r}: hyperparameters without help text: {', '.join(missing)}")
    old = _METHODS.get(spec.name)
    if old is not None and old.hparams_class.__module__ != spec.hparams_class.__module__:
        raise ValueError(f"method {spec.name!r} is already registered by {old.hparams_class.__module__}")
    _METHODS[spec.name] = spec  # the same module imported again replaces its own entry
    return spec


def _discover() -> None:
    """Import every method folder (cheap when already imported) and, once, the entry points."""
    import kedit_vc.editors as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.ispkg and module.name not in NOT_METHODS:
            importlib.import_module(f"{package.__name__}.{module.name}")
    _entry_points()


@lru_cache(maxsize=1)
def _entry_points() -> None:
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        loaded = point.load()
        if isinstance(loaded, MethodSpec) and loaded.name not in _METHODS:
            register_method(loaded)


def method_names() -> list[str]:
    """Every registered method, sorted."""
    _discover()
    return sorted(_METHODS)


@dataclass(frozen=True)
class UnknownMethod:
    """Why a name is not a method here: the closest known name, and the known ones."""

    name: str
    known: tuple[str, ...]

    @property
    def suggestion(self) -> str | None:
        match = difflib.get_close_matches(self.name, self.known, n=1, cutoff=0.6)
        return match[0] if match else None

    def hint(self) -> str:
        """`` (did you mean 'x'?)`` or an empty string."""
        return f" (did you mean '{self.suggestion}'?)" if self.suggestion else ""

    def message(self, lead: str | None = None) -> str:
        """One line: ``lead`` (default ``unknown editing method 'x'``), the hint, the known methods."""
        lead = lead or f"unknown editing method {self.name!r}"
        return f"{lead}{self.hint()}; known methods: {', '.join(self.known)}"


def unknown_method(name: str, among: Collection[str] | None = None) -> UnknownMethod | None:
    """The one check of a method name: None if ``name`` is registered (and in ``among``)."""
    known = tuple(sorted(among)) if among is not None else tuple(method_names())
    if name in known and name in _METHODS:
        return None
    return UnknownMethod(name, known)


def require_method(name: str, among: Collection[str] | None = None, lead: str | None = None) -> MethodSpec:
    """The spec of ``name`` (matched case-insensitively); a one-line ``UsageError`` otherwise."""
    key = str(name).strip().lower()
    problem = unknown_method(key, among)
    if problem is not None:
        raise UsageError(problem.message(lead or f"unknown editing method {name!r}"))
    return _METHODS[key]


def method_spec(name: str) -> MethodSpec:
    return require_method(name)


def method_summaries() -> str:
    """``rome: …; memit: …`` for the ``--method`` help text."""
    return "; ".join(f"{n}: {_METHODS[n].summary}" for n in method_names())


def nested_hparams_field(method: str) -> str | None:
    """The field of ``method`` that maps other methods to their hyperparameters (``auto``'s
    ``hparams``), or None (also for an unknown method: ``require_method`` reports that)."""
    from kedit_vc.editors.common.hparams import METHOD_HPARAMS

    if unknown_method(method) is not None:
        return None
    found = [f.name for f in fields(_METHODS[method].hparams_class) if f.metadata.get("kind") == METHOD_HPARAMS]
    return found[0] if found else None


def hparam_names(method: str) -> list[str]:
    """The accepted hyperparameter names of ``method``."""
    return [f.name for f in fields(require_method(method).hparams_class)]


def build_hparams(method: str, overrides: Mapping[str, Any]) -> Any:
    """The method's defaults with ``overrides`` applied; lists become tuples (TypeError on
    an unknown name, as ``dataclasses.replace`` raises)."""
    cls = require_method(method).hparams_class
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(cls(), **clean)


def check_hparams(method: str, hparams: Any) -> list[str]:
    """The method's own problems with ``hparams`` (empty: fine)."""
    spec = require_method(method)
    return list(spec.check(hparams)) if spec.check is not None else []


def resolve_hparams(method: str, model: Any, hparams: Any) -> Any:
    """``hparams`` with the model-dependent defaults of ``method`` filled in."""
    spec = require_method(method)
    return spec.resolve(model, hparams) if spec.resolve is not None else hparams

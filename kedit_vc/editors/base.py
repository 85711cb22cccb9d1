"""The editor contract and registry.

An editor turns a batch of ``EditRequest``s into a ``Delta`` for a given model:
``(model, tokenizer, requests, hparams, context) -> Delta``. It keeps no state between
calls and leaves the model's weights as it found them. Methods register by lowercase
name; adding one touches one folder under ``kedit_vc/editors/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

from kedit_vc.errors import UsageError

if TYPE_CHECKING:  # torch stays out of the import path of the spec tools
    import torch

    from kedit_vc.compiler.plan import EditRequest
    from kedit_vc.delta import Delta


@dataclass
class EditContext:
    """What an editor may use besides the model: shared caches and history.

    ``stats_dir``: where covariance statistics are cached (None: the default cache).
    ``preserved_keys``: layer -> keys [n, d_in] of live edits in the history, for
    editors that protect earlier edits (AlphaEdit, MEMIT with history).
    ``progress``: whether to show progress bars.
    ``fingerprint``: the base model's fingerprint, keying cached statistics (None: hash
    the weights in hand).
    """

    fingerprint: str | None = None
    stats_dir: str | None = None
    preserved_keys: Mapping[int, "torch.Tensor"] = field(default_factory=dict)
    progress: bool = True
    #: Filled by editors: layer -> keys [n, d_in] written by this edit (stored per commit).
    written_keys: dict[int, "torch.Tensor"] = field(default_factory=dict)
    #: Filled by editors: timings and other facts worth recording in the manifest.
    info: dict[str, Any] = field(default_factory=dict)


class Editor(Protocol):
    """What every editing method provides."""

    name: str
    hparams_class: type

    def edit(
        self,
        model: "torch.nn.Module",
        tokenizer: Any,
        requests: Sequence["EditRequest"],
        hparams: Any,
        context: EditContext,
    ) -> "Delta": ...


def base_fingerprint(model: "torch.nn.Module", context: EditContext) -> str:
    """The fingerprint statistics are cached under (computed once if not given)."""
    if context.fingerprint is None:
        from kedit_vc.models.fingerprint import fingerprint_state_dict

        context.fingerprint = fingerprint_state_dict(model.state_dict())
    return context.fingerprint


_REGISTRY: dict[str, Callable[[], Editor]] = {}


def register_editor(name: str, factory: Callable[[], Editor]) -> None:
    """Register an editor factory under a unique lowercase name."""
    key = name.lower()
    if key in _REGISTRY:
        raise ValueError(f"editor {key!r} is already registered")
    _REGISTRY[key] = factory


def _load_builtin_editors() -> None:
    """Import the built-in methods once (importing a method's package registers it)."""
    from kedit_vc.editors import alphaedit, auto, ft, memit, rome  # noqa: F401


def get_editor(name: str) -> Editor:
    """The editor registered as ``name``; a clear error listing the known ones otherwise."""
    _load_builtin_editors()
    try:
        return _REGISTRY[name.lower()]()
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UsageError(f"unknown editing method {name!r}; known methods: {known}") from None


def editor_names() -> list[str]:
    _load_builtin_editors()
    return sorted(_REGISTRY)

"""The editor contract: what an editing method receives and what it returns.

An editor turns a batch of ``EditRequest``s into an ``EditResult`` for a given model:
``(model, tokenizer, requests, hparams, context) -> EditResult``. It keeps no state
between calls, leaves the model's weights as it found them, and only reads its
``EditContext``: everything it produced comes back in the returned value, so data flows
one way (ops -> editor -> ops). Methods are found through ``kedit_vc.editors.registry``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # torch stays out of the import path of the spec tools
    import torch

    from kedit_vc.compiler.plan import EditRequest
    from kedit_vc.delta import Delta


@dataclass(frozen=True)
class EditContext:
    """What an editor may read besides the model: shared caches and history.

    ``fingerprint``: the base model's fingerprint, keying cached statistics (None: hash
    the weights in hand). ``stats_dir``: where covariance statistics are cached (None:
    the default cache). ``preserved_keys``: layer -> keys [n, d_in] of live edits in the
    history, for editors that protect earlier edits.
    ``progress``: whether to show progress bars. ``carried``: method state carried by
    the history, name -> tensor, summed over the live commits' ``EditResult.carried``.
    """

    fingerprint: str | None = None
    stats_dir: str | None = None
    preserved_keys: Mapping[int, torch.Tensor] = field(default_factory=dict)
    progress: bool = True
    carried: Mapping[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class EditResult:
    """Everything one editor call produced.

    ``delta``: the patch. ``written_keys``: layer -> keys [n, d_in] this edit wrote
    (stored per commit; later edits preserve them). ``info``: timings and other facts
    for the manifest. ``fingerprint``: the base fingerprint used (computed here if the
    context had none). ``carried``: this edit's additive contribution to carried state.
    ``patches``: non-weight patches (``kedit_vc.patches``: a GRACE codebook), recorded beside
    ``delta`` (then usually empty) and attached to the model for later calls.
    """

    delta: Delta
    written_keys: Mapping[int, torch.Tensor] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None
    carried: Mapping[str, torch.Tensor] = field(default_factory=dict)
    patches: tuple[Any, ...] = ()


class Editor(Protocol):
    """What every editing method provides (its hyperparameter class is in the registry)."""

    name: str

    def edit(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        requests: Sequence[EditRequest],
        hparams: Any,
        context: EditContext,
    ) -> EditResult: ...


def base_fingerprint(model: torch.nn.Module, context: EditContext) -> str:
    """The fingerprint statistics are cached under: the context's, or the weights' hash."""
    if context.fingerprint is not None:
        return context.fingerprint
    from kedit_vc.models.fingerprint import fingerprint_state_dict

    return fingerprint_state_dict(model.state_dict())


def get_editor(name: str) -> Editor:
    """The editor registered as ``name``; a one-line error naming the known ones otherwise."""
    from kedit_vc.editors.registry import require_method

    return require_method(name).factory()


def editor_names() -> list[str]:
    from kedit_vc.editors.registry import method_names

    return method_names()

"""The base model moved to a point of history and back, exactly.

HEAD's weights are the base weights plus the sum of the live deltas
(``Store.live_sum``: one file at HEAD; ``kedit_vc.delta.materialize`` multiplies each
parameter's concatenated factors once). ``Weights`` remembers the original of every
parameter it touches, so going to another commit or back to the base is a copy, never a
reload, and never accumulates rounding.

The first time a sum is added to a parameter, the parameter gets new storage holding
``original + sum`` and the original storage is kept untouched as the saved copy: a
loaded model's weights are memory-mapped from its file, and writing into them in place
would copy every page on first touch (and cloning them first would read them all again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch

from kedit_vc.delta import Delta, DeltaError, materialize

if TYPE_CHECKING:
    from kedit_vc.models import LoadedModel
    from kedit_vc.store import Store


def load_base(store: "Store", progress: bool = False) -> "LoadedModel":
    """Load the store's base model and refuse it if its fingerprint is not the recorded one."""
    from kedit_vc.models import load_model

    loaded = load_model(store.model_ref, progress=progress)
    store.check_base(loaded.fingerprint)
    return loaded


class Weights:
    """Moves a model between revisions: parameters between base + deltas states (float32 sums,
    one copy back), and the non-weight patches (codebooks...) attached beside them."""

    def __init__(self, model: torch.nn.Module) -> None:
        from kedit_vc.patches.attach import side_patches

        self.model = model
        self._params = model.state_dict(keep_vars=True)
        self._saved: dict[str, torch.Tensor] = {}
        self.side = side_patches(model)

    def set_side(self, patches: Sequence[Any]) -> None:
        """Attach exactly ``patches`` (non-delta kinds, oldest first), replacing what was attached."""
        self.side.set(patches)

    def attach(self, patches: Sequence[Any]) -> None:
        """Attach ``patches`` after those already attached (an edit's result, before the next call)."""
        if patches:
            self.side.add(patches)

    def _save(self, names: Sequence[str]) -> None:
        for name in names:
            if name not in self._saved and name in self._params:
                self._saved[name] = self._params[name].detach().clone()

    def reset(self) -> None:
        """Back to the base model: base weights, nothing attached."""
        self.side.clear()
        with torch.no_grad():
            for name, original in self._saved.items():
                self._params[name].copy_(original)

    def add_sums(self, sums: Mapping[str, torch.Tensor]) -> None:
        """``param += sum`` for each name (sums from ``materialize``)."""
        for name, value in sums.items():
            if name not in self._params or tuple(self._params[name].shape) != tuple(value.shape):
                raise DeltaError(f"a live delta updates {name!r} with shape {tuple(value.shape)}, "
                                 "which this model does not have; was it made for another model?")
        with torch.no_grad():
            for name, value in sums.items():
                param = self._params[name]
                value = value.to(param.device, param.dtype)
                if name in self._saved:
                    param.add_(value)
                else:  # keep the original storage as the saved copy; the sum goes to new storage
                    self._saved[name] = param.detach()
                    param.data = self._saved[name] + value

    def set_deltas(self, deltas: Sequence[Delta]) -> None:
        """Base weights plus the sum of ``deltas`` (nothing attached)."""
        self.reset()
        self.add_sums(materialize(deltas))

    def set_revision(self, store: "Store", rev: str) -> None:
        """``rev`` as ``load_edited`` gives it: base + its live deltas' sum, its live patches attached."""
        self.set_deltas([store.live_sum(rev)])
        self.set_side(store.live_patches(rev))

    def apply(self, delta: Delta) -> None:
        """Add one more delta on top of the current state."""
        self._save(list(delta.updates))
        delta.apply(self.model)

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

from typing import TYPE_CHECKING, Mapping, Sequence

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
    """Moves a model's parameters between base + deltas states (float32 sums, one copy back)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self._params = model.state_dict(keep_vars=True)
        self._saved: dict[str, torch.Tensor] = {}

    def _save(self, names: Sequence[str]) -> None:
        for name in names:
            if name not in self._saved and name in self._params:
                self._saved[name] = self._params[name].detach().clone()

    def reset(self) -> None:
        """Back to the base weights."""
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
        """Base weights plus the sum of ``deltas``."""
        self.reset()
        self.add_sums(materialize(deltas))

    def apply(self, delta: Delta) -> None:
        """Add one more delta on top of the current state."""
        self._save(list(delta.updates))
        delta.apply(self.model)

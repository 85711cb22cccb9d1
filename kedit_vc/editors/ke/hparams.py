"""KE's hyperparameters: the hypernetwork's settings (no torch import).

With the base model's fingerprint they pick the trained editor; training settings are
flags of ``kvc train ke``, recorded in the trained editor's ``editor.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kedit_vc.editors.common.hparams import hparam


@dataclass(frozen=True)
class KeHparams:
    """KE: a bi-LSTM hypernetwork conditioned on the edit text rescales the edit's gradient."""

    layers: tuple[int, ...] | None = hparam(None, "blocks whose MLP down-projection is edited (None: the last 3)")
    lstm_hidden: int = hparam(128, "hidden size of each direction of the bi-LSTM (the reference's 256)")
    condition_dim: int = hparam(256, "size of the edit's condition vector (the reference's 1024)")
    hidden: int = hparam(128, "hidden size of each layer's conditioned MLP (the reference's 128)")
    max_scale: float = hparam(1.0, "largest step on the gradient (the reference's 1e-3 is for BERT/BART "
                                   "gradients; SmolLM2's down-projection gradients need a larger one)")
    editor: str | None = hparam(None, "folder of a trained editor (None: the one cached for this base model "
                                      "and these settings by 'kvc train ke')")


def network_settings(hp: Any, layers: tuple[int, ...]) -> dict[str, Any]:
    return {"layers": list(layers), "lstm_hidden": hp.lstm_hidden, "condition_dim": hp.condition_dim,
            "hidden": hp.hidden, "max_scale": hp.max_scale}


def check(hp: KeHparams) -> list[str]:
    problems = []
    if hp.layers is not None and any(int(x) < 0 for x in hp.layers):
        problems.append(f"layers must be >= 0, not {list(hp.layers)}")
    for name in ("lstm_hidden", "condition_dim", "hidden"):
        if getattr(hp, name) < 1:
            problems.append(f"{name} must be >= 1, not {getattr(hp, name)}")
    if hp.max_scale <= 0:
        problems.append(f"max_scale must be > 0, not {hp.max_scale}")
    return problems

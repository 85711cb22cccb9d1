"""MEND's hyperparameters: the editor network's settings (no torch import).

These settings, with the base model's fingerprint, pick the trained editor; training
settings (steps, learning rates, loss weights, data) are flags of ``kvc train mend``
and are recorded in the trained editor's ``editor.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kedit_vc.editors.common.hparams import hparam


@dataclass(frozen=True)
class MendHparams:
    """MEND: a trained network maps an edit's gradient factors to a low-rank weight update."""

    layers: tuple[int, ...] | None = hparam(None, "blocks whose MLP down-projection is edited (None: the last 3)")
    rank: int = hparam(128, "rank of each low-rank layer of the editor MLP (the reference's 1920 is sized "
                            "for GPU training of GPT-scale models; 128 trains on a CPU)")
    n_hidden: int = hparam(1, "hidden layers of the editor MLP (the reference's 1)")
    editor: str | None = hparam(None, "folder of a trained editor (None: the one cached for this base model "
                                      "and these settings by 'kvc train mend')")


def network_settings(hp: Any, layers: tuple[int, ...]) -> dict[str, Any]:
    """What keys a trained MEND editor besides the base fingerprint."""
    return {"layers": list(layers), "rank": hp.rank, "n_hidden": hp.n_hidden}


def check(hp: MendHparams) -> list[str]:
    problems = []
    if hp.layers is not None and any(int(x) < 0 for x in hp.layers):
        problems.append(f"layers must be >= 0, not {list(hp.layers)}")
    if hp.rank < 1:
        problems.append(f"rank must be >= 1, not {hp.rank}")
    if hp.n_hidden < 0:
        problems.append(f"n_hidden must be >= 0, not {hp.n_hidden}")
    return problems

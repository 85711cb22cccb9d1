"""SERAC's edit-time hyperparameters and checks (no torch import).

The classifier's own settings (block, rank, steps...) are training settings of
``kvc train serac``; an edit only chooses which trained classifier to use and the
probability above which a prompt counts as in an edit's scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.common.hparams import hparam

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SeracHparams:
    """SERAC (Mitchell et al. 2022, arXiv 2206.06520): scope classifier + edit memory + counterfactual model."""

    classifier: str | None = hparam(None, "trained scope classifier: a hash prefix or folder "
                                          "(None: of those `kvc train serac` made for this base model, a "
                                          "calibrated one trained on the most records, then the newest; "
                                          "the commit names it)")
    threshold: float | None = hparam(None, "scope probability at which a prompt is routed to the counterfactual "
                                           "model (None: the threshold `kvc train serac` calibrated on the "
                                           "classifier's held-out records; 0.5 for a classifier trained before "
                                           "calibration)")
    shots: int = hparam(0, "copy demonstrations of the next-best stored edits put before the routed edit "
                           "(worked examples for the base model acting as counterfactual model)")


def check(hp: SeracHparams) -> list[str]:
    problems = []
    if hp.threshold is not None and not 0.0 < hp.threshold < 1.0:
        problems.append(f"threshold must be a probability in (0, 1), got {hp.threshold}")
    if hp.shots < 0:
        problems.append(f"shots must be >= 0, got {hp.shots}")
    if hp.classifier is not None and not hp.classifier.strip():
        problems.append("classifier must be a hash prefix or a folder, not empty")
    return problems


def resolve(model: torch.nn.Module, hp: SeracHparams) -> SeracHparams:
    return hp

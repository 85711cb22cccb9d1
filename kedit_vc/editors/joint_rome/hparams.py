"""Joint ROME's hyperparameters: ROME's own, so a range of ROME commits re-solves with theirs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.rome.hparams import RomeHparams
from kedit_vc.editors.rome.hparams import check as rome_check
from kedit_vc.editors.rome.hparams import resolve as rome_resolve

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class JointRomeHparams(RomeHparams):
    """Joint ROME: ROME's update for n keys at once at one MLP output projection (its fields
    and defaults are ROME's; ``mom2_weight`` scales C and cancels in the solve, as in ROME)."""


def check(hp: JointRomeHparams) -> list[str]:
    return rome_check(hp)


def resolve(model: "torch.nn.Module", hp: JointRomeHparams) -> JointRomeHparams:
    """``hp`` with ROME's model-dependent layer and sample size."""
    return rome_resolve(model, hp)  # type: ignore[return-value]

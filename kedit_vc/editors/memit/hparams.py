"""MEMIT's hyperparameters, checks and model-dependent defaults (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.common.hparams import (
    NormAnchorHparams,
    TargetHparams,
    depth_layers,
    hparam,
    layer_problems,
    with_model_defaults,
)

if TYPE_CHECKING:
    import torch

#: Fractions of depth spanned by the edited blocks (GPT-J reference: 3..8 of 28).
LAYER_FRACTIONS = (0.07, 0.2)


@dataclass(frozen=True)
class MemitHparams(TargetHparams, NormAnchorHparams):
    """MEMIT (Meng et al. 2023): many facts spread over a range of layers."""

    layers: tuple[int, ...] | None = hparam(None, "blocks whose MLP down-projections are edited (None: "
                                                  f"{LAYER_FRACTIONS[0]:.0%}..{LAYER_FRACTIONS[1]:.0%} of the depth)")
    mom2_weight: float = hparam(5000.0, "lambda in (lambda C + K K^T)^-1 (GPT-J: 15000)")


def check(hp: MemitHparams) -> list[str]:
    return layer_problems("layers", hp.layers) + hp.target_problems() + hp.anchor_problems()


def resolve(model: torch.nn.Module, hp: MemitHparams) -> MemitHparams:
    """``hp`` with the layers and sample size this model gets by default."""
    return with_model_defaults(model, hp, layers=lambda: depth_layers(model, LAYER_FRACTIONS))

"""PMET's hyperparameters, checks and model-dependent defaults (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.common.hparams import (
    TargetHparams,
    depth_layers,
    hparam,
    layer_problems,
    with_model_defaults,
)

if TYPE_CHECKING:
    import torch

#: Fractions of depth spanned by the edited blocks: MEMIT's range (the PMET reference edits
#: GPT-J blocks 3..8 of 28, as MEMIT does).
LAYER_FRACTIONS = (0.07, 0.2)


@dataclass(frozen=True)
class PmetHparams(TargetHparams):
    """PMET (Li et al. 2024): targets for the attention and MLP outputs of the last edited
    block optimised together; only the MLP target is written, spread over the layers."""

    layers: tuple[int, ...] | None = hparam(None, "blocks whose MLP down-projections are edited (None: "
                                                  f"{LAYER_FRACTIONS[0]:.0%}..{LAYER_FRACTIONS[1]:.0%} of the depth)")
    mom2_weight: float = hparam(1000.0, "lambda in (lambda C + K K^T)^-1 (SmolLM2 dev sweep, "
                                        "bench/results/pmet_sweep.json: 1000 beats MEMIT's 5000)")


def check(hp: PmetHparams) -> list[str]:
    return layer_problems("layers", hp.layers) + hp.target_problems()


def resolve(model: torch.nn.Module, hp: PmetHparams) -> PmetHparams:
    """``hp`` with the layers and sample size this model gets by default."""
    return with_model_defaults(model, hp, layers=lambda: depth_layers(model, LAYER_FRACTIONS))

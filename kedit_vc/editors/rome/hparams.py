"""ROME's hyperparameters, checks and model-dependent defaults (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.common.hparams import (
    TargetHparams,
    depth_layer,
    hparam,
    layer_problems,
    with_model_defaults,
)

if TYPE_CHECKING:
    import torch

#: Fraction of depth of the edited block: the reference's GPT-J layer 5/28 and our SmolLM2
#: sweep (``bench/sweep_rome_layers.py``, results in ``bench/results/``).
LAYER_FRACTION = 0.15


@dataclass(frozen=True)
class RomeHparams(TargetHparams):
    """ROME (Meng et al. 2022): a rank-one update of one MLP output projection."""

    layer: int | None = hparam(None, f"block whose MLP down-projection is edited (None: {LAYER_FRACTION:.0%} "
                                     "of the depth)")
    mom2_weight: float = hparam(1.0, "weight of the covariance in (C + ...)^-1")


def check(hp: RomeHparams) -> list[str]:
    return layer_problems("layer", hp.layer) + hp.target_problems()


def resolve(model: torch.nn.Module, hp: RomeHparams) -> RomeHparams:
    """``hp`` with the layer and sample size this model gets by default."""
    return with_model_defaults(model, hp, layer=lambda: depth_layer(model, LAYER_FRACTION))

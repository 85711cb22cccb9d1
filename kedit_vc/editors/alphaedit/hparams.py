"""AlphaEdit's hyperparameters, checks and model-dependent defaults (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.common.hparams import (
    NAS_HELP,
    NormAnchorHparams,
    TargetHparams,
    depth_layers,
    hparam,
    layer_problems,
    with_model_defaults,
)

if TYPE_CHECKING:
    import torch

#: Fractions of depth spanned by the edited blocks (MEMIT's).
LAYER_FRACTIONS = (0.07, 0.2)


@dataclass(frozen=True)
class AlphaeditHparams(TargetHparams, NormAnchorHparams):
    """AlphaEdit (Fang et al. 2025): MEMIT's targets, the update projected onto the null
    space of the keys' second moment so what the model already knows is left alone."""

    layers: tuple[int, ...] | None = hparam(None, "blocks whose MLP down-projections are edited (None: "
                                                  f"{LAYER_FRACTIONS[0]:.0%}..{LAYER_FRACTIONS[1]:.0%} of the depth)")
    nullspace_threshold: float = hparam(0.1, "null space: the least-used key directions holding <= this "
                                             "share of E||k||^2")
    l2: float = hparam(1.0, "alpha in (P (K^T K + K_p^T K_p) + alpha I)^-1")
    nas: bool = hparam(True, f"{NAS_HELP} (on by default for AlphaEdit: in 1,000 sequential CounterFact edits "
                             "it kept efficacy, paraphrase and neighbourhood higher from 600 edits on; MEMIT keeps "
                             "it off, not measured at length)")


def check(hp: AlphaeditHparams) -> list[str]:
    problems = layer_problems("layers", hp.layers) + hp.target_problems() + hp.anchor_problems()
    if not 0 <= hp.nullspace_threshold < 1:
        problems.append(f"nullspace_threshold must be in [0, 1), not {hp.nullspace_threshold}")
    return problems


def resolve(model: torch.nn.Module, hp: AlphaeditHparams) -> AlphaeditHparams:
    """``hp`` with the layers and sample size this model gets by default."""
    return with_model_defaults(model, hp, layers=lambda: depth_layers(model, LAYER_FRACTIONS))

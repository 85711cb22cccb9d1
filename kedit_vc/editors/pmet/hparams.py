"""PMET's hyperparameters: MEMIT's (the same layers, targets and solve), with the covariance
weight PMET's dev sweep chose (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.common.hparams import hparam
from kedit_vc.editors.memit.hparams import MemitHparams
from kedit_vc.editors.memit.hparams import check as memit_check
from kedit_vc.editors.memit.hparams import resolve as memit_resolve

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class PmetHparams(MemitHparams):
    """PMET (Li et al. 2024): targets for the attention and MLP outputs of the last edited
    block optimised together; only the MLP target is written, spread over MEMIT's layers
    (the PMET reference edits GPT-J blocks 3..8 of 28, as MEMIT does)."""

    mom2_weight: float = hparam(1000.0, "lambda in (lambda C + K K^T)^-1 (SmolLM2 dev sweep, "
                                        "bench/results/pmet_sweep.json: 1000 beats MEMIT's 5000)")
    raw_context: bool = hparam(False, "also fit keys and targets on the bare prompt without the <|endoftext|> "
                                      "prefix (on for ROME and MEMIT, where it was measured; off here until "
                                      "measured with PMET's joint targets)")


def check(hp: PmetHparams) -> list[str]:
    problems = memit_check(hp)
    if hp.nas:
        problems.append("nas is MEMIT's and AlphaEdit's (PMET solves its targets jointly); leave it false")
    return problems


def resolve(model: "torch.nn.Module", hp: PmetHparams) -> PmetHparams:
    """``hp`` with MEMIT's layers and sample size for this model."""
    return memit_resolve(model, hp)  # type: ignore[return-value]

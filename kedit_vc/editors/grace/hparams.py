"""GRACE's hyperparameters, checks and model-dependent defaults (no torch import).

Defaults follow the reference implementations (Thartvigsen/GRACE, EasyEdit's grace): the
codebook sits on the MLP down-projection of a late block (EasyEdit edits block 27 of 32 on
Llama-2-7B: 85% of the depth), initial deferral radius 1.0, values trained by Adam at lr 1.0
for up to 100 steps, radius expansion by "coverage". ``raw_context`` (ours, on by default) also
keys each edit on its prompt without the shared prefix token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.common.hparams import depth_layer, hparam, layer_problems, with_model_defaults

if TYPE_CHECKING:
    import torch

#: Fraction of depth of the block whose MLP output holds the codebook (EasyEdit: 27/32).
LAYER_FRACTION = 0.85
VALUE_INITS = ("warm", "cold")


@dataclass(frozen=True)
class GraceHparams:
    """GRACE (Hartvigsen et al. 2023, arXiv 2211.11031): a codebook at one layer."""

    layer: int | None = hparam(None, f"block whose MLP down-projection output holds the codebook (None: "
                                     f"{LAYER_FRACTION:.0%} of the depth)")
    eps_init: float = hparam(1.0, "initial deferral radius of a new entry (Euclidean, in the layer's input space)")
    steps: int = hparam(100, "most Adam steps training a value")
    lr: float = hparam(1.0, "Adam learning rate of the value")
    value_init: str = hparam("warm", "a new value starts as the layer's own output (warm) or uniform noise (cold)")
    early_stop: bool = hparam(True, "stop training a value once every target token is the argmax")
    seed: int = hparam(0, "seed of the cold value initialisation")
    raw_context: bool = hparam(True, "also key the edit on the bare prompt without the <|endoftext|> prefix "
                                     "(its own entry, same label), so it holds on raw prompts too, the form "
                                     "users type to an exported model; our extension (false: the paper's one "
                                     "key per edit); no effect where the tokenizer adds its own BOS")


def check(hp: GraceHparams) -> list[str]:
    problems = layer_problems("layer", hp.layer)
    if not hp.eps_init > 0:
        problems.append(f"eps_init must be > 0, got {hp.eps_init}")
    if hp.steps < 1:
        problems.append(f"steps must be >= 1, got {hp.steps}")
    if not hp.lr > 0:
        problems.append(f"lr must be > 0, got {hp.lr}")
    if hp.value_init not in VALUE_INITS:
        problems.append(f"value_init must be one of {', '.join(VALUE_INITS)}, got {hp.value_init!r}")
    return problems


def resolve(model: torch.nn.Module, hp: GraceHparams) -> GraceHparams:
    """``hp`` with the layer this model gets by default."""
    return with_model_defaults(model, hp, layer=lambda: depth_layer(model, LAYER_FRACTION))

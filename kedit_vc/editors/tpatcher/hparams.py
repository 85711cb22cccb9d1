"""T-Patcher's hyperparameters, checks and model-dependent defaults (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.common.hparams import hparam, layer_problems, with_model_defaults

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TpatcherHparams:
    """T-Patcher (Huang et al. 2023): a neuron per edit, trained with the edit loss, an
    activation loss (fire on the edit) and a memory loss (stay silent elsewhere).

    Ours, not the paper's: the memory also holds the edit's declared neighbour prompts and
    its relation prompt under stand-in subjects (``neighbour_memory``, ``template_memory``;
    0 and 0 give the paper's form), because a neuron keyed at the prompt's last token
    otherwise fires on every prompt of that relation."""

    layer: int | None = hparam(None, "block whose MLP gets the neurons (None: the last, as in the paper)")
    steps: int = hparam(100, "Adam steps per neuron (stops early once the edit and both margins hold)")
    lr: float = hparam(0.05, "learning rate of the neuron's key, bias and value")
    act_margin: float = hparam(1.0, "beta: the neuron's activation on the edit's positions must reach this")
    memory_margin: float = hparam(-1.0, "alpha: the key's pre-activation on memory tokens must stay below this")
    gap_margin: float = hparam(1.0, "the edit's activation must exceed every memory token's by this")
    act_weight: float = hparam(1.0, "weight of the activation loss")
    memory_weight: float = hparam(1.0, "weight of the memory loss")
    memory_texts: int = hparam(20, "model-generated texts whose tokens form the memory (unrelated inputs)")
    memory_length: int = hparam(20, "tokens per memory text")
    prompts: int = hparam(0, "generated prefixes under which the edit is also trained (fire and answer after "
                             "each; 0: the bare prompt only, as the paper)")
    context_length: int = hparam(10, "tokens per generated prefix")
    template_memory: int = hparam(20, "the edit's own relation prompt filled with this many stand-in subjects "
                                     "joins its memory (the prompt's last token carries the relation: 0: none)")
    neighbour_memory: int = hparam(5, "of the edit's declared neighbour probes (same relation, other subjects), "
                                      "whose tokens join its memory (0: generated text only)")


def check(hp: TpatcherHparams) -> list[str]:
    problems = layer_problems("layer", hp.layer)
    for name in ("steps", "memory_texts", "memory_length"):
        if getattr(hp, name) < 1:
            problems.append(f"{name} must be >= 1, not {getattr(hp, name)}")
    for name in ("neighbour_memory", "template_memory", "prompts", "context_length"):
        if getattr(hp, name) < 0:
            problems.append(f"{name} must be >= 0, not {getattr(hp, name)}")
    if hp.memory_margin >= 0:
        problems.append(f"memory_margin must be < 0 (a memory token must not fire), not {hp.memory_margin}")
    return problems


def resolve(model: torch.nn.Module, hp: TpatcherHparams) -> TpatcherHparams:
    """``hp`` with the last block when no layer is named."""
    from kedit_vc.models.families import num_layers

    return with_model_defaults(model, hp, layer=lambda: num_layers(model) - 1)

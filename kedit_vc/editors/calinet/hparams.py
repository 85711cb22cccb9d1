"""CaliNet's hyperparameters, checks and model-dependent defaults (no torch import).

What is simplified against the paper (Dong et al., Findings of EMNLP 2022), also in
``--help``: one calibration memory of ``slots`` slots per layer is trained per commit (the
paper trains one memory for all the facts at once: a commit of many edits is that case);
the training prompts are the rewrite prompt under ``prompts`` model-generated prefixes
(the paper's are PARAREL paraphrases; CounterFact's paraphrases are evaluation probes);
and a penalty on the slots' output over generated text (``keep_weight``) and a KL term on
the next token after the edits' declared neighbour prompts (``neighbour_keep``) are added to
the paper's loss, which has only the facts' own, so the slots stay quiet off their facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.common.hparams import hparam, layer_problems, with_model_defaults

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class CalinetHparams:
    """CaliNet (Dong et al. 2022): FFN-like calibration slots beside chosen MLPs, trained on
    the edits' prompts with the model frozen.

    Simplified against the paper: one slot memory per commit; prompts are the rewrite
    prompt under generated prefixes (not PARAREL paraphrases); a penalty on the slots'
    output over generated text and a KL term on the edits' declared neighbour prompts are
    added to the loss."""

    layers: tuple[int, ...] | None = hparam(None, "blocks whose MLP gets slots (None: the last, as the paper's "
                                                  "best placement, the top layer)")
    slots: int = hparam(16, "calibration slots per layer per commit (the paper: 64 for 100 facts)")
    steps: int = hparam(100, "Adam steps (stops early once every target token is the argmax and the NLL is "
                             "below stop_nll)")
    lr: float = hparam(0.01, "learning rate of the slots (the paper: 1e-2)")
    init_scale: float = hparam(1.0, "keys and ups start at N(0, init_scale^2 / d_model); values start at 0, so "
                                    "a fresh memory adds nothing")
    prompts: int = hparam(4, "generated prefixes besides the bare prompt (training prompts per fact)")
    context_length: int = hparam(10, "tokens per generated prefix")
    stop_nll: float = hparam(0.1, "stop once the mean target NLL is below this (and every target token wins)")
    keep_weight: float = hparam(10.0, "weight of the slots' mean squared output on generated text, relative to the "
                                     "MLP's own (0: the paper's loss alone)")
    memory_texts: int = hparam(40, "generated texts whose tokens the keep penalty reads (fewer: slots fire on "
                                   "more unrelated text)")
    memory_length: int = hparam(20, "tokens per memory text")
    neighbour_keep: int = hparam(5, "of each edit's declared neighbour probes (same relation, other subjects) whose "
                                    "next-token distribution is held to the unedited model's by a KL term (0: none)")
    template_keep: int = hparam(0, "the edit's own relation prompt filled with this many stand-in subjects joins "
                                   "the neighbours held by the KL term (0: none)")
    neighbour_weight: float = hparam(1.0, "weight of that KL term")
    stop_kl: float = hparam(0.05, "early stop also needs the neighbours' mean KL (nats) at or below this")


def check(hp: CalinetHparams) -> list[str]:
    problems = layer_problems("layers", hp.layers)
    for name in ("slots", "steps", "memory_texts", "memory_length"):
        if getattr(hp, name) < 1:
            problems.append(f"{name} must be >= 1, not {getattr(hp, name)}")
    for name in ("prompts", "context_length", "neighbour_keep", "template_keep"):
        if getattr(hp, name) < 0:
            problems.append(f"{name} must be >= 0, not {getattr(hp, name)}")
    for name in ("lr", "init_scale"):
        if getattr(hp, name) <= 0:
            problems.append(f"{name} must be > 0, not {getattr(hp, name)}")
    for name in ("stop_nll", "keep_weight", "neighbour_weight", "stop_kl"):
        if getattr(hp, name) < 0:
            problems.append(f"{name} must be >= 0, not {getattr(hp, name)}")
    return problems


def resolve(model: torch.nn.Module, hp: CalinetHparams) -> CalinetHparams:
    """``hp`` with the last block when no layers are named."""
    from kedit_vc.models.families import num_layers

    return with_model_defaults(model, hp, layers=lambda: (num_layers(model) - 1,))

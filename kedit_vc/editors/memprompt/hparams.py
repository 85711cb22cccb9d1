"""MemPrompt's hyperparameters and checks (no torch import).

threshold 0.9 (session 14; 0.8 before): chosen on dev records at the memory size users reach,
150 facts in one memory (CounterFact 450-499, CounterFact-5k 4100-4149, zsRE 250-299; SmolLM2,
block 5, subject-key retriever; ``bench/memprompt_threshold.py``,
``bench/results/memprompt_threshold.json``) by the rule stated first: the best mean of
paraphrases retrieving their own fact and neighbour prompts retrieving none, ties to the lower.
At 0.8 that is 0.91 / 0.865; at 0.9, 0.885 / 0.932 (the best mean, 0.908). The earlier 0.8
was set on 30 facts (CounterFact 200-229), where neighbours meet fewer keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.common.hparams import depth_layer, hparam, layer_problems, with_model_defaults
from kedit_vc.editors.ike.hparams import LAYER_FRACTION, RETRIEVERS

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class MemPromptHparams:
    """MemPrompt (Madaan et al. 2022, arXiv 2201.06009): a memory of corrections, prepended when it applies."""

    threshold: float = hparam(0.9, "cosine similarity a stored fact needs to be put before a query")
    max_facts: int = hparam(1, "most facts put before one query (the best-matching, best last)")
    layer: int | None = hparam(None, "block whose output the retriever reads "
                                     f"(None: {LAYER_FRACTION:.0%} of the depth)")
    retriever: str = hparam("subject", "match queries to facts by the fact's last subject token state ('subject') "
                                       "or by mean-pooled states ('mean')")


def check(hp: MemPromptHparams) -> list[str]:
    problems = layer_problems("layer", hp.layer)
    if not -1.0 <= hp.threshold <= 1.0:
        problems.append(f"threshold must be a cosine in [-1, 1], got {hp.threshold}")
    if hp.max_facts < 1:
        problems.append(f"max_facts must be >= 1, got {hp.max_facts}")
    if hp.retriever not in RETRIEVERS:
        problems.append(f"retriever must be one of {', '.join(RETRIEVERS)}, got {hp.retriever!r}")
    return problems


def resolve(model: torch.nn.Module, hp: MemPromptHparams) -> MemPromptHparams:
    return with_model_defaults(model, hp, layer=lambda: depth_layer(model, LAYER_FRACTION))

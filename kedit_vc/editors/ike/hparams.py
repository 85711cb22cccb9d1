"""IKE's hyperparameters, checks and model-dependent defaults (no torch import).

k: the paper (arXiv 2305.12740) and EasyEdit use 32 demonstrations with GPT-J; the default
here is 8, since every demonstration is paid for at every query on a CPU (the trade is
measured in ``bench/incontext.py``). Retrieval runs on the model's own states at block
``layer`` (default: 17% of the depth, block 5 of SmolLM2's 30, where the subject-key
retriever separated paraphrases from neighbourhood prompts best on CounterFact 200-229:
``kedit_vc.patches.memory.live``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.common.hparams import depth_layer, hparam, layer_problems, with_model_defaults

if TYPE_CHECKING:
    import torch

#: Fraction of depth of the block whose states the retriever reads.
LAYER_FRACTION = 0.17
RETRIEVERS = ("subject", "mean")


@dataclass(frozen=True)
class IkeHparams:
    """IKE (Zheng et al. 2023, arXiv 2305.12740): in-context editing with retrieved demonstrations."""

    k: int = hparam(8, "demonstrations put before the query's new fact (the paper: 32)")
    layer: int | None = hparam(None, "block whose output the retriever reads "
                                     f"(None: {LAYER_FRACTION:.0%} of the depth)")
    retriever: str = hparam("subject", "match queries to facts by the fact's last subject token state ('subject') "
                                       "or by mean-pooled states ('mean')")
    update_demos: int = hparam(2, "update demonstrations made from each fact's paraphrase probes")
    retain_demos: int = hparam(2, "retain demonstrations made from each fact's neighbourhood probes")


def check(hp: IkeHparams) -> list[str]:
    problems = layer_problems("layer", hp.layer)
    if hp.k < 0:
        problems.append(f"k must be >= 0, got {hp.k}")
    if hp.retriever not in RETRIEVERS:
        problems.append(f"retriever must be one of {', '.join(RETRIEVERS)}, got {hp.retriever!r}")
    for name in ("update_demos", "retain_demos"):
        if getattr(hp, name) < 0:
            problems.append(f"{name} must be >= 0, got {getattr(hp, name)}")
    return problems


def resolve(model: torch.nn.Module, hp: IkeHparams) -> IkeHparams:
    """``hp`` with the retrieval layer this model gets by default."""
    return with_model_defaults(model, hp, layer=lambda: depth_layer(model, LAYER_FRACTION))

"""MeLLo's hyperparameters and checks (no torch import).

hops 4: the paper's loop makes at most four generation calls per question (MQuAKE's
questions have 2 to 4 hops). max_new_tokens 64: one step is a judgement line, a subquestion
and a tentative answer, about 40 tokens with SmolLM2's tokenizer. The retriever is the edit
memory's own (block ``layer``, last-subject-token keys: ``kedit_vc.patches.memory.live``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.common.hparams import depth_layer, hparam, layer_problems, with_model_defaults
from kedit_vc.editors.ike.hparams import LAYER_FRACTION, RETRIEVERS

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class MelloHparams:
    """MeLLo (Zhong et al. 2023, arXiv 2305.14795): question decomposition over an edit memory."""

    hops: int = hparam(4, "most facts retrieved for one question before a final answer is asked for")
    max_new_tokens: int = hparam(64, "most tokens the model writes in one step of the loop")
    layer: int | None = hparam(None, "block whose output the retriever reads "
                                     f"(None: {LAYER_FRACTION:.0%} of the depth)")
    retriever: str = hparam("subject", "match subquestions to facts by the fact's last subject token state "
                                       "('subject') or by mean-pooled states ('mean')")


def check(hp: MelloHparams) -> list[str]:
    problems = layer_problems("layer", hp.layer)
    if not 1 <= hp.hops <= 16:
        problems.append(f"hops must be between 1 and 16, got {hp.hops}")
    if not 8 <= hp.max_new_tokens <= 512:
        problems.append(f"max_new_tokens must be between 8 and 512, got {hp.max_new_tokens}")
    if hp.retriever not in RETRIEVERS:
        problems.append(f"retriever must be one of {', '.join(RETRIEVERS)}, got {hp.retriever!r}")
    return problems


def resolve(model: torch.nn.Module, hp: MelloHparams) -> MelloHparams:
    return with_model_defaults(model, hp, layer=lambda: depth_layer(model, LAYER_FRACTION))

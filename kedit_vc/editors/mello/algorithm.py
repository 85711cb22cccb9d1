"""MeLLo (Zhong et al. 2023, arXiv 2305.14795): edits as facts, used by a multi-hop loop.

An edit writes its facts into the edit memory (``kedit_vc.patches.memory``, policy
``mello``) and changes no weight. Nothing is put in front of ordinary queries: the attached
memory gives the model ``answer(question)``, MeLLo's loop (``patches/memory/mello.py``),
which decomposes the question with the model itself, retrieves the stored fact nearest each
subquestion and lets the model judge whether it overrides its own tentative answer. So
teacher-forced metrics of a MeLLo revision are the base model's; score it with the loop.

Differences from the paper: our own few-shot demonstrations (same line format); retrieval
with the edited model's own states instead of Contriever; greedy decoding on small local
models instead of text-davinci-003; a final answer asked for when the hop bound is reached.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.editors.base import EditContext, EditResult
from kedit_vc.editors.common.incontext import memory_result
from kedit_vc.patches.memory.mello_prompt import PROMPT_VERSION

from .hparams import MelloHparams, resolve


class MelloEditor:
    name = "mello"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: MelloHparams, context: EditContext) -> EditResult:
        hp = resolve(model, hparams)
        settings = {"policy": "mello", "hops": hp.hops, "max_new_tokens": hp.max_new_tokens, "layer": hp.layer,
                    "retriever": hp.retriever, "prompt": PROMPT_VERSION}
        return memory_result(model, tokenizer, requests, "mello", settings, context)

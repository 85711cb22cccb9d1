"""MemPrompt (Madaan et al. 2022, arXiv 2201.06009): a memory of corrections, used when it applies.

An edit stores its facts (the "feedback") keyed by their prompts (the "question"). At query
time the attached memory (``kedit_vc.patches.memory``) scores the stored facts against the
query and, when the best reaches ``threshold``, puts ``New Fact: <prompt> <new object>\\nPrompt:``
before it; otherwise the query runs unchanged, so prompts no stored fact applies to keep the
unedited model's output exactly (locality by construction, as far as the retriever is right).

Simplified from the paper: the memory holds facts, not free-text user feedback on a task's
understanding; no few-shot prompt teaches the model how to use the feedback (the paper's
GPT-3 prompt did); the retriever is the model's own states rather than a trained or
Sentence-BERT retriever, and the memory grows by commits rather than by live user feedback.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.editors.base import EditContext, EditResult
from kedit_vc.editors.common.incontext import memory_result

from .hparams import MemPromptHparams, resolve


class MemPromptEditor:
    name = "memprompt"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: MemPromptHparams, context: EditContext) -> EditResult:
        hp = resolve(model, hparams)
        settings = {"policy": "memprompt", "threshold": hp.threshold, "max_facts": hp.max_facts,
                    "shots": hp.shots, "layer": hp.layer, "retriever": hp.retriever}
        return memory_result(model, tokenizer, requests, "memprompt", settings, context)

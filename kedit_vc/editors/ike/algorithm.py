"""IKE (Zheng et al. 2023, arXiv 2305.12740): edit by in-context demonstrations, weights untouched.

An edit writes its facts to the edit memory (``kedit_vc.patches.memory``) with the three
kinds of demonstration the paper builds from a fact: copy (``New Fact: f\\nPrompt: f``),
update (a paraphrase answered with the new object) and retain (a neighbourhood prompt
answered with its own, unchanged object). At query time the attached memory takes the
fact that best matches the query as its "New Fact", puts the ``k`` demonstrations nearest to
that fact (drawn from every live fact, the fact's own paraphrase and neighbourhood
demonstrations excepted) before ``New Fact: <prompt> <new object>\\nPrompt:`` and the query.

Faithful: the demonstration kinds and their format, retrieval of the k nearest
demonstrations by embedding similarity, most similar first (EasyEdit's order), no weight
change. Different: the demonstration pool is the store's live facts rather than a training
split; the encoder is the model's own states (no sentence-transformer download); a query is
matched to its fact by retrieval, since a deployed model is not told which fact is asked.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.editors.base import EditContext, EditResult
from kedit_vc.editors.common.incontext import memory_result

from .hparams import IkeHparams, resolve


class IkeEditor:
    name = "ike"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: IkeHparams, context: EditContext) -> EditResult:
        hp = resolve(model, hparams)
        settings = {"policy": "ike", "k": hp.k, "layer": hp.layer, "retriever": hp.retriever}
        return memory_result(model, tokenizer, requests, "ike", settings, context,
                             update_demos=hp.update_demos, retain_demos=hp.retain_demos)

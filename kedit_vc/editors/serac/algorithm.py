"""SERAC (Mitchell et al. 2022, arXiv 2206.06520): semi-parametric editing with a retrieval-augmented
counterfactual model.

An edit is written to the explicit edit memory (kind ``memory``, policy ``serac``: a commit
adds its facts, a revert removes them). At query time the attached memory asks the trained
scope classifier (``classifier``: an embedding classifier over the frozen base model, a
named simplification of the paper's cross-encoder) how likely the prompt falls in each
stored edit's scope; when the best reaches ``threshold`` (by default the one calibrated
with the classifier on its held-out records) the prompt goes to the
counterfactual model with that edit, otherwise to the base model, unchanged (its logits
are the base model's bit for bit).

Named simplification: the counterfactual model is **the base model conditioned on the
retrieved edit in context** (``New Fact: <prompt> <new object>`` and one worked example,
then the prompt), not the small separately trained model of the paper.

The commit records the classifier's content hash in the patch's settings, and attaching
the memory loads exactly that classifier from the cache.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.editors.base import EditContext, EditResult, base_fingerprint
from kedit_vc.editors.common.incontext import memory_result

from .classifier import find_classifier
from .hparams import SeracHparams


class SeracEditor:
    name = "serac"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: SeracHparams, context: EditContext) -> EditResult:
        classifier = find_classifier(base_fingerprint(model, context), hparams.classifier,
                                     on_default=lambda line: print(line, file=sys.stderr))
        threshold = classifier.threshold if hparams.threshold is None else hparams.threshold
        settings = {"policy": "serac", "threshold": threshold, "layer": classifier.layer,
                    "retriever": "subject", "classifier": classifier.hash, "shots": hparams.shots}
        result = memory_result(model, tokenizer, requests, "serac", settings, context)
        return EditResult(delta=result.delta, info={**result.info, "classifier": classifier.hash},
                          fingerprint=result.fingerprint, patches=result.patches)

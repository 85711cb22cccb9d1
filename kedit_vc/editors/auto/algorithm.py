"""``auto``: try each candidate editor on the edit's own probes and keep the best delta.

Each candidate edits the weights in hand, its delta is applied, the requests' probes
are scored with the shared evaluation (``kedit_vc.eval``), and the touched parameters
are copied back (subtracting a float32 delta would drift the bits). The weighted
average of ``choose`` picks the winner; its delta, written keys and info are returned
as if it had been called directly, and the justification table goes to stderr: it is
the reason for the choice, not progress, so it is printed whatever ``progress`` says.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Any, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.editors.base import EditContext, EditResult, get_editor
from kedit_vc.editors.common.restore import restored_parameters
from kedit_vc.eval.report import summarize
from kedit_vc.eval.scoring import score_requests

from .choose import Trial, candidate_settings, choose, usable_weights
from .hparams import AutoHparams


class AutoEditor:
    name = "auto"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: AutoHparams, context: EditContext) -> EditResult:
        candidates = candidate_settings(hparams)
        pre = score_requests(model, tokenizer, requests)
        usable_weights(hparams.weights, set(summarize(pre, pre).metrics))  # a bad weight fails before editing
        trials: list[Trial] = []
        runs: dict[str, EditResult] = {}
        fingerprint = context.fingerprint
        for method, hp in candidates:
            sub = replace(context, fingerprint=fingerprint)
            started = time.perf_counter()
            result = get_editor(method).edit(model, tokenizer, requests, hp, sub)
            seconds = time.perf_counter() - started
            fingerprint = fingerprint or result.fingerprint  # hash the base once
            with restored_parameters(model, list(result.delta.updates)):
                result.delta.apply(model)
                post = score_requests(model, tokenizer, requests)
            trials.append(Trial(method, summarize(post, pre).metrics, seconds))
            runs[method] = result
        choice = choose(trials, hparams.weights)
        print(choice.table(), file=sys.stderr)
        winner = runs[choice.chosen]
        return replace(winner, info={**winner.info, "method": choice.label, "auto": choice.to_json()},
                       fingerprint=fingerprint)

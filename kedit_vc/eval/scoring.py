"""Score every probe of a list of edit requests in one batched pass."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.eval.forward import score_continuations
from kedit_vc.eval.scores import EditScores, ProbeScore, ProbeScores


def score_requests(
    model: torch.nn.Module,
    tokenizer: Any,
    requests: Sequence[EditRequest],
    batch_size: int = 16,
    progress: bool = False,
) -> ProbeScores:
    """Teacher-forced scores of each request's probes (target and foil, leading space added).

    All (prompt, " " + answer) pairs of all requests go through one length-sorted batched
    pass; the result keeps request and probe order so pre- and post-edit scores line up.
    """
    pairs: list[tuple[str, str]] = []
    for request in requests:
        for probe in request.probes:
            pairs.append((probe.prompt, " " + probe.target))
            if probe.foil is not None:
                pairs.append((probe.prompt, " " + probe.foil))
    scored = iter(score_continuations(model, tokenizer, pairs, batch_size=batch_size, progress=progress))
    edits = []
    for request in requests:
        probes = []
        for probe in request.probes:
            target = next(scored)
            foil = next(scored) if probe.foil is not None else None
            probes.append(ProbeScore(
                kind=probe.kind, prompt=probe.prompt, target=probe.target,
                target_nll=target.nll, target_acc=target.acc,
                target_ids=target.target_ids, argmax_ids=target.argmax_ids,
                foil=probe.foil, foil_nll=None if foil is None else foil.nll, group=probe.group,
            ))
        edits.append(EditScores(request.edit_id, tuple(probes)))
    return ProbeScores(tuple(edits))

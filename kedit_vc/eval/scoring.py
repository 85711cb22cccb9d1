"""Score every probe of a list of edit requests in one batched pass."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.eval.forward import score_continuations
from kedit_vc.eval.scores import EditScores, ProbeScore, ProbeScores
from kedit_vc.models.prompting import prefix_ids

#: ``prompts=`` choices: which prompt forms to score.
PROMPT_CHOICES = ("prefixed", "raw", "both")


def _score_form(
    model: torch.nn.Module,
    tokenizer: Any,
    requests: Sequence[EditRequest],
    batch_size: int,
    progress: bool,
    prefixed: bool,
    generative: bool,
) -> list[list[ProbeScore]]:
    """Teacher-forced (and, if asked, greedy) scores of every probe on one prompt form."""
    pairs: list[tuple[str, str]] = []
    for request in requests:
        for probe in request.probes:
            pairs.append((probe.prompt, " " + probe.target))
            if probe.foil is not None:
                pairs.append((probe.prompt, " " + probe.foil))
    scored = iter(score_continuations(model, tokenizer, pairs, batch_size=batch_size, progress=progress,
                                      prefixed=prefixed))
    texts: Any = iter(())
    if generative:
        from kedit_vc.eval.generative import budget, greedy_continuations

        probes = [p for r in requests for p in r.probes]
        texts = iter(greedy_continuations(model, tokenizer, [p.prompt for p in probes],
                                          [budget(tokenizer, p.target) for p in probes],
                                          prefixed=prefixed, batch_size=batch_size))
    out = []
    for request in requests:
        row = []
        for probe in request.probes:
            target = next(scored)
            foil = next(scored) if probe.foil is not None else None
            row.append(ProbeScore(
                kind=probe.kind, prompt=probe.prompt, target=probe.target,
                target_nll=target.nll, target_acc=target.acc,
                target_ids=target.target_ids, argmax_ids=target.argmax_ids,
                foil=probe.foil, foil_nll=None if foil is None else foil.nll, group=probe.group,
                generated=next(texts) if generative else None,
            ))
        out.append(row)
    return out


def score_requests(
    model: torch.nn.Module,
    tokenizer: Any,
    requests: Sequence[EditRequest],
    batch_size: int = 16,
    progress: bool = False,
    *,
    prompts: str = "prefixed",
    generative: bool = False,
) -> ProbeScores:
    """Scores of each request's probes (target and foil, leading space added).

    Teacher-forced: all (prompt, " " + answer) pairs of all requests go through one
    length-sorted batched pass; the result keeps request and probe order so pre- and
    post-edit scores line up. ``generative=True`` adds each probe's bounded greedy
    continuation (``ProbeScore.generated``). ``prompts="raw"`` or ``"both"`` also scores the
    raw prompts (``ProbeScore.raw``); where the tokenizer adds its own BOS no prefix token
    is added, the two forms are the same tokens, and they are scored once
    (``ProbeScores.forms == "same"``).
    """
    if prompts not in PROMPT_CHOICES:
        raise ValueError(f"prompts must be one of {', '.join(PROMPT_CHOICES)}, not {prompts!r}")
    prefixed = _score_form(model, tokenizer, requests, batch_size, progress, True, generative)
    forms = "prefixed"
    if prompts != "prefixed":
        if prefix_ids(tokenizer):
            raw = _score_form(model, tokenizer, requests, batch_size, progress, False, generative)
            forms = "both"
        else:
            raw, forms = prefixed, "same"
        prefixed = [[dataclasses.replace(p, raw=r) for p, r in zip(ps, rs)] for ps, rs in zip(prefixed, raw)]
    return ProbeScores(tuple(EditScores(req.edit_id, tuple(row)) for req, row in zip(requests, prefixed)), forms)

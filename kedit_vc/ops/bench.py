"""Run an edit benchmark (CounterFact, zsRE, MQuAKE) on the shared data: edit, score, undo.

Three ways to edit the cases, all starting from and returning to the base weights:
- ``batch=1`` (default): each case edited alone, evaluated, then undone;
- ``batch=B``: B cases per editor call (MEMIT's batch editing; ``B=n`` is one batch);
- ``sequential=True``: chunks applied one after another and kept, all cases evaluated at
  the end (the sequential-editing setting), then undone.
Pre-edit scores of every probe are taken once on the base weights before any edit.
Scoring and the summary are ``kedit_vc.eval``'s; this module drives the editor.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace
from typing import Any, Mapping, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.editors.base import EditContext, Editor
from kedit_vc.eval.bench import BenchResult
from kedit_vc.eval.datasets import BenchCase
from kedit_vc.eval.efficiency import delta_bytes as stored_bytes
from kedit_vc.eval.efficiency import machine_facts, measure, peak_rss_bytes
from kedit_vc.eval.fluency import generate, ngram_entropy
from kedit_vc.eval.report import summarize
from kedit_vc.eval.scores import EditScores, ProbeScores
from kedit_vc.eval.scoring import score_requests
from kedit_vc.patches.attach import side_patches

#: How every benchmark scores probes: teacher-forced and generative, prefixed and raw prompts.
SCORING: Mapping[str, Any] = {"prompts": "both", "generative": True}


def _chunks(cases: Sequence[BenchCase], size: int) -> list[list[BenchCase]]:
    return [list(cases[i : i + size]) for i in range(0, len(cases), size)]


def _requests(cases: Sequence[BenchCase]) -> list:
    return [r for c in cases for r in c.requests]


def split_neighbours(request: EditRequest, given: int) -> tuple[EditRequest, EditRequest]:
    """(what is scored, what the editor is given) for one benchmark request.

    An editor never sees a probe that is scored: it is given the rewrite and, of the
    declared neighbourhood prompts, only the last ``given`` (which are then not scored),
    the prompts that editors training against neighbours (WISE, T-Patcher, CaliNet) read.
    """
    neighbours = [p for p in request.probes if p.kind == "neighbour"]
    handed = neighbours[max(0, len(neighbours) - given):] if given > 0 else []
    scored = tuple(p for p in request.probes if not any(p is h for h in handed))
    return replace(request, probes=scored), replace(request, probes=tuple(handed))


def _fluency(model: torch.nn.Module, tokenizer: Any, cases: Sequence[BenchCase], max_new_tokens: int) -> list[float]:
    """N-gram entropy of top-5 sampled generations (as ROME's ``generate_fast``), seeded."""
    prompts = [p for c in cases for p in c.generation_prompts]
    return [ngram_entropy(generate(model, tokenizer, prompts, max_new_tokens, sample=True))] if prompts else []


def _restore(params: Mapping[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> None:
    """Copy saved base values back into the parameters (bit-exact) and forget them."""
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value)
    saved.clear()


def run_bench(
    model: torch.nn.Module,
    tokenizer: Any,
    benchmark: str,
    cases: Sequence[BenchCase],
    editor: Editor,
    hparams: Any,
    batch: int = 1,
    sequential: bool = False,
    eval_batch_size: int = 16,
    fluency_tokens: int = 0,
    progress: bool = False,
    fingerprint: str | None = None,
    given_neighbours: int = 0,
    pre_scores: Mapping[str, EditScores] | None = None,
) -> BenchResult:
    """Edit ``cases`` with ``editor``, evaluate, undo; return the summary with pre-edit values.

    ``fluency_tokens > 0`` also measures fluency (top-5 sampled generations of that many
    tokens from each case's generation prompts, with the case's edit applied).
    ``fingerprint`` keys the editors' cached statistics. Editors see no scored probe
    (``split_neighbours``): each is given the rewrite and the last ``given_neighbours``
    neighbourhood prompts, which are then left out of the scores. Weights are restored by copying
    the touched parameters back: adding and subtracting a delta in float32 drifts by
    rounding, and a drifted model would hash to another fingerprint. ``pre_scores``: the
    unedited model's scores of some of these very requests by edit id (an earlier run's
    ``BenchResult.pre_scores`` on the same model and ``given_neighbours``), not scored again.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    start = time.perf_counter()
    pairs = {id(r): split_neighbours(r, given_neighbours) for r in _requests(cases)}
    all_requests = [pairs[id(r)][0] for r in _requests(cases)]
    ids = [r.edit_id for r in all_requests]
    if len(set(ids)) == len(ids):
        known = dict(pre_scores or {})
        todo = [r for r in all_requests if r.edit_id not in known]
        if todo:
            known.update(score_requests(model, tokenizer, todo, batch_size=eval_batch_size, progress=progress,
                                        **SCORING).by_id())
        pre = ProbeScores(tuple(known[i] for i in ids), SCORING["prompts"])
    else:  # ids repeat: scored in order, nothing reused
        pre = score_requests(model, tokenizer, all_requests, batch_size=eval_batch_size, progress=progress,
                             **SCORING)
    pre_fluency = _fluency(model, tokenizer, cases, fluency_tokens) if fluency_tokens else []
    post_edits: list[EditScores] = []
    post_fluency: list[float] = []
    saved: dict[str, torch.Tensor] = {}
    params = dict(model.named_parameters())
    edit_seconds, delta_bytes, peak_gpu = 0.0, 0, None
    call_seconds: list[float] = []
    chunks = _chunks(cases, batch)
    side = side_patches(model)
    attached_before = list(side.patches)
    try:
        for done, chunk in enumerate(chunks, 1):
            requests = [pairs[id(r)][0] for r in _requests(chunk)]
            with measure() as watch:
                result = editor.edit(model, tokenizer, [pairs[id(r)][1] for r in _requests(chunk)], hparams,
                                     EditContext(fingerprint=fingerprint, progress=progress))
            delta = result.delta
            assert watch.result is not None
            edit_seconds += watch.result.seconds
            call_seconds.append(watch.result.seconds)
            if watch.result.peak_gpu_bytes is not None:
                peak_gpu = max(peak_gpu or 0, watch.result.peak_gpu_bytes)
            delta_bytes += stored_bytes(delta) + sum(len(patch.to_bytes()) for patch in result.patches)
            for name in delta.updates:
                saved.setdefault(name, params[name].detach().clone())
            delta.apply(model)
            if result.patches:  # non-weight patches (GRACE codebooks, T-Patcher neurons) act while attached
                side.add(result.patches)
            if not sequential:
                post_edits += score_requests(model, tokenizer, requests, batch_size=eval_batch_size, **SCORING).edits
                if fluency_tokens:
                    post_fluency += _fluency(model, tokenizer, chunk, fluency_tokens)
                _restore(params, saved)
                side.set(attached_before)
            if progress:
                print(f"\redited {done}/{len(chunks)} editor call(s)", end="\n" if done == len(chunks) else "",
                      file=sys.stderr)
        if sequential:
            post_edits = list(score_requests(model, tokenizer, all_requests, batch_size=eval_batch_size,
                                             **SCORING).edits)
            if fluency_tokens:
                post_fluency = _fluency(model, tokenizer, cases, fluency_tokens)
    finally:  # back to the base weights and patches, whatever happened
        _restore(params, saved)
        side.set(attached_before)
    extra = {"seconds": edit_seconds / max(1, len(chunks)), "delta_bytes": float(delta_bytes / max(1, len(chunks)))}
    if post_fluency:
        extra["fluency"] = sum(post_fluency) / len(post_fluency)
    pre_extra = {"fluency": sum(pre_fluency) / len(pre_fluency)} if pre_fluency else {}
    report = summarize(ProbeScores(tuple(post_edits), pre.forms), pre, extra=extra, pre_extra=pre_extra)
    return BenchResult(
        benchmark=benchmark, method=getattr(editor, "name", type(editor).__name__), n_cases=len(cases),
        batch=batch, sequential=sequential, report=report, wall_seconds=time.perf_counter() - start,
        edit_seconds=edit_seconds, median_edit_seconds=statistics.median(call_seconds) if call_seconds else 0.0,
        peak_rss_bytes=peak_rss_bytes(), peak_gpu_bytes=peak_gpu, pre_scores=pre.by_id(),
    )


def run_facts(model: torch.nn.Module, method: str, hparams: Any, model_ref: str, fingerprint: str) -> dict[str, Any]:
    """What a saved benchmark result needs to be read later: when, where, which settings.

    The hyperparameters are recorded resolved (the model's defaults filled in), since
    defaults change between versions.
    """
    import dataclasses

    from kedit_vc.editors.registry import resolve_hparams

    resolved = resolve_hparams(method, model, hparams)
    is_instance = dataclasses.is_dataclass(resolved) and not isinstance(resolved, type)
    settings = dataclasses.asdict(resolved) if is_instance else {}
    return {**machine_facts(), "model": model_ref, "fingerprint": fingerprint,
            "hparams": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}}

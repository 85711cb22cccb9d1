"""Edit benchmarks (CounterFact, zsRE, MQuAKE) on the shared data, summarised as the field does.

Three ways to edit the cases, all starting from and returning to the base weights:
- ``batch=1`` (default): each case edited alone, evaluated, then undone with ``delta.inverse()``;
- ``batch=B``: B cases per editor call (MEMIT's batch editing; ``B=n`` is one batch);
- ``sequential=True``: chunks applied one after another and kept, all cases evaluated at
  the end (the sequential-editing setting), then undone in reverse order.
Pre-edit scores of every probe are taken once on the base weights before any edit.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from kedit_vc.editors.base import EditContext, Editor
from kedit_vc.eval.datasets import BenchCase
from kedit_vc.eval.efficiency import delta_bytes as stored_bytes
from kedit_vc.eval.efficiency import machine_facts, measure, peak_rss_bytes
from kedit_vc.eval.fluency import generate, ngram_entropy
from kedit_vc.eval.report import FORMS_NOTE, EvalReport, summarize
from kedit_vc.eval.scores import EditScores, ProbeScores
from kedit_vc.eval.scoring import score_requests

#: The reference summary of each benchmark, in display order.
REFERENCE: Mapping[str, tuple[str, ...]] = {
    "counterfact": ("reliability_cf", "generalization_cf", "locality_cf", "cf_score",
                    "reliability_cf_magnitude", "generalization_cf_magnitude", "locality_cf_magnitude", "fluency",
                    "gen_reliability", "gen_generalization", "gen_locality",
                    "raw_reliability_cf", "raw_generalization_cf", "raw_locality_cf", "raw_cf_score",
                    "raw_gen_reliability", "raw_gen_generalization", "raw_gen_locality"),
    "zsre": ("reliability_acc", "generalization_acc", "locality_agree", "portability_acc",
             "gen_reliability", "gen_generalization", "gen_locality", "gen_locality_agree", "gen_portability",
             "raw_reliability", "raw_generalization", "raw_locality", "raw_portability",
             "raw_gen_reliability", "raw_gen_generalization", "raw_gen_locality", "raw_gen_portability"),
    "mquake": ("portability_multihop", "reliability_acc", "reliability_cf",
               "gen_portability_multihop", "gen_reliability",
               "raw_portability_multihop", "raw_reliability", "raw_reliability_cf",
               "raw_gen_portability_multihop", "raw_gen_reliability"),
}
REFERENCE = {**REFERENCE, "counterfact5k": REFERENCE["counterfact"]}  # the same definitions, flat records

#: How every benchmark scores probes: teacher-forced and generative, prefixed and raw prompts.
SCORING: Mapping[str, Any] = {"prompts": "both", "generative": True}

#: How the reference papers name them.
LABELS: Mapping[str, str] = {
    "reliability_cf": "efficacy score", "generalization_cf": "paraphrase score",
    "locality_cf": "neighbourhood score", "cf_score": "score (hmean)",
    "reliability_cf_magnitude": "efficacy magnitude", "generalization_cf_magnitude": "paraphrase magnitude",
    "locality_cf_magnitude": "neighbourhood magnitude", "fluency": "fluency (n-gram entropy)",
    "reliability_acc": "reliability (token acc)", "generalization_acc": "generalization (token acc)",
    "locality_agree": "locality (agreement)", "portability_acc": "portability (token acc)",
    "portability_multihop": "multi-hop accuracy",
    "gen_reliability": "reliability (generative)", "gen_generalization": "generalization (generative)",
    "gen_locality": "locality (generative)", "gen_portability": "portability (generative)",
    "gen_portability_multihop": "multi-hop (generative)", "gen_locality_agree": "locality (generation unchanged)",
}
LABELS = {**LABELS, **{f"raw_{k}": f"{v}, raw" for k, v in LABELS.items()},
          "raw_reliability": "reliability (token acc), raw", "raw_generalization": "generalization (token acc), raw",
          "raw_locality": "locality (agreement), raw", "raw_portability": "portability (token acc), raw"}


@dataclass(frozen=True)
class BenchResult:
    """A benchmark run: its settings, the report (with pre-edit values) and costs."""

    benchmark: str
    method: str
    n_cases: int
    batch: int
    sequential: bool
    report: EvalReport
    wall_seconds: float
    edit_seconds: float
    median_edit_seconds: float          # per editor call (the "median seconds per edit")
    peak_rss_bytes: int
    peak_gpu_bytes: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark, "method": self.method, "n_cases": self.n_cases,
            "batch": self.batch, "sequential": self.sequential, "report": self.report.to_json(),
            "wall_seconds": self.wall_seconds, "edit_seconds": self.edit_seconds,
            "median_edit_seconds": self.median_edit_seconds,
            "peak_rss_bytes": self.peak_rss_bytes, "peak_gpu_bytes": self.peak_gpu_bytes,
        }

    def summary(self) -> str:
        """The reference summary with pre-edit values beside post-edit ones, and costs."""
        mode = "sequential" if self.sequential else f"batch {self.batch}"
        lines = [f"{self.benchmark}: {self.method}, {self.n_cases} cases, {mode}",
                 f"{'metric':<36} {'pre':>9} {'post':>9}"]
        for name in REFERENCE[self.benchmark]:
            if name in self.report.metrics or name in self.report.pre_metrics:
                pre, post = self.report.pre_metrics.get(name), self.report.metrics.get(name)
                lines.append(f"{LABELS.get(name, name):<36} {_fmt(pre):>9} {_fmt(post):>9}")
        if self.report.forms != "prefixed":
            lines.append(FORMS_NOTE[self.report.forms])
        lines.append(f"wall time {self.wall_seconds:.1f} s (editing {self.edit_seconds:.1f} s, "
                     f"median {self.median_edit_seconds:.1f} s per editor call), "
                     f"peak RSS {self.peak_rss_bytes / 2**20:.0f} MiB"
                     + (f", peak GPU {self.peak_gpu_bytes / 2**20:.0f} MiB" if self.peak_gpu_bytes else ""))
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _chunks(cases: Sequence[BenchCase], size: int) -> list[list[BenchCase]]:
    return [list(cases[i : i + size]) for i in range(0, len(cases), size)]


def _requests(cases: Sequence[BenchCase]) -> list:
    return [r for c in cases for r in c.requests]


def _fluency(model: torch.nn.Module, tokenizer: Any, cases: Sequence[BenchCase], max_new_tokens: int) -> list[float]:
    """N-gram entropy of top-5 sampled generations (as ROME's ``generate_fast``), seeded."""
    prompts = [p for c in cases for p in c.generation_prompts]
    return [ngram_entropy(generate(model, tokenizer, prompts, max_new_tokens, sample=True))] if prompts else []


def _restore(params: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> None:
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
) -> BenchResult:
    """Edit ``cases`` with ``editor``, evaluate, undo; return the summary with pre-edit values.

    ``fluency_tokens > 0`` also measures fluency (top-5 sampled generations of that many
    tokens from each case's generation prompts, with the case's edit applied).
    ``fingerprint`` keys the editors' cached statistics. Weights are restored by copying
    the touched parameters back: adding and subtracting a delta in float32 drifts by
    rounding, and a drifted model would hash to another fingerprint.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    start = time.perf_counter()
    all_requests = _requests(cases)
    pre = score_requests(model, tokenizer, all_requests, batch_size=eval_batch_size, progress=progress, **SCORING)
    pre_fluency = _fluency(model, tokenizer, cases, fluency_tokens) if fluency_tokens else []
    post_edits: list[EditScores] = []
    post_fluency: list[float] = []
    saved: dict[str, torch.Tensor] = {}
    params = dict(model.named_parameters())
    edit_seconds, delta_bytes, peak_gpu = 0.0, 0, None
    call_seconds: list[float] = []
    chunks = _chunks(cases, batch)
    try:
        for done, chunk in enumerate(chunks, 1):
            requests = _requests(chunk)
            with measure() as watch:
                delta = editor.edit(model, tokenizer, requests, hparams,
                                    EditContext(fingerprint=fingerprint, progress=progress)).delta
            edit_seconds += watch.result.seconds
            call_seconds.append(watch.result.seconds)
            if watch.result.peak_gpu_bytes is not None:
                peak_gpu = max(peak_gpu or 0, watch.result.peak_gpu_bytes)
            delta_bytes += stored_bytes(delta)
            for name in delta.updates:
                saved.setdefault(name, params[name].detach().clone())
            delta.apply(model)
            if not sequential:
                post_edits += score_requests(model, tokenizer, requests, batch_size=eval_batch_size, **SCORING).edits
                if fluency_tokens:
                    post_fluency += _fluency(model, tokenizer, chunk, fluency_tokens)
                _restore(params, saved)
            if progress:
                print(f"\redited {done}/{len(chunks)} editor call(s)", end="\n" if done == len(chunks) else "",
                      file=sys.stderr)
        if sequential:
            post_edits = list(score_requests(model, tokenizer, all_requests, batch_size=eval_batch_size, **SCORING).edits)
            if fluency_tokens:
                post_fluency = _fluency(model, tokenizer, cases, fluency_tokens)
    finally:  # back to the base weights, whatever happened
        _restore(params, saved)
    extra = {"seconds": edit_seconds / max(1, len(chunks)), "delta_bytes": float(delta_bytes / max(1, len(chunks)))}
    if post_fluency:
        extra["fluency"] = sum(post_fluency) / len(post_fluency)
    pre_extra = {"fluency": sum(pre_fluency) / len(pre_fluency)} if pre_fluency else {}
    report = summarize(ProbeScores(tuple(post_edits), pre.forms), pre, extra=extra, pre_extra=pre_extra)
    return BenchResult(
        benchmark=benchmark, method=getattr(editor, "name", type(editor).__name__), n_cases=len(cases),
        batch=batch, sequential=sequential, report=report, wall_seconds=time.perf_counter() - start,
        edit_seconds=edit_seconds, median_edit_seconds=statistics.median(call_seconds) if call_seconds else 0.0,
        peak_rss_bytes=peak_rss_bytes(), peak_gpu_bytes=peak_gpu,
    )


def run_facts(model: torch.nn.Module, method: str, hparams: Any, model_ref: str, fingerprint: str) -> dict[str, Any]:
    """What a saved benchmark result needs to be read later: when, where, which settings.

    The hyperparameters are recorded resolved (the model's defaults filled in), since
    defaults change between versions.
    """
    import dataclasses

    from kedit_vc.editors.registry import resolve_hparams

    resolved = resolve_hparams(method, model, hparams)
    settings = dataclasses.asdict(resolved) if dataclasses.is_dataclass(resolved) else {}
    return {**machine_facts(), "model": model_ref, "fingerprint": fingerprint,
            "hparams": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}}

"""Benchmark summaries (CounterFact, zsRE, MQuAKE) as the field reports them.

What each benchmark's summary lists, under the names the reference papers use, and a
run's result. Running the editors over the cases is a use case: ``kedit_vc.ops.bench``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from kedit_vc.eval.registry import CF_HEADLINES, CF_SCORE, GENERATIVE, HEADLINES, RAW, raw
from kedit_vc.eval.report import FORMS_NOTE, EvalReport

#: CounterFact's summary: efficacy, paraphrase and neighbourhood scores and their harmonic mean.
_CF = (*CF_HEADLINES.values(), CF_SCORE)
#: Generative metrics of every family but portability (CounterFact has no portability probes).
_GEN_DIRECT = tuple(name for name, family in GENERATIVE.items() if family != "portability")

#: The reference summary of each benchmark, in display order (names from ``eval.registry``).
REFERENCE: Mapping[str, tuple[str, ...]] = {
    "counterfact": (*_CF, *(f"{name}_magnitude" for name in CF_HEADLINES.values()), "fluency",
                    *_GEN_DIRECT, *raw((*_CF, *_GEN_DIRECT))),
    "zsre": (*HEADLINES.values(), *_GEN_DIRECT, "gen_locality_agree", "gen_portability",
             *raw(HEADLINES), *raw(GENERATIVE)),
    "mquake": ("portability_multihop", "reliability_acc", "reliability_cf",
               "gen_portability_multihop", "gen_reliability",
               "raw_portability_multihop", "raw_reliability", "raw_reliability_cf",
               "raw_gen_portability_multihop", "raw_gen_reliability"),
}
REFERENCE = {**REFERENCE, "counterfact5k": REFERENCE["counterfact"]}  # the same definitions, flat records

#: How the reference papers name them.
LABELS: Mapping[str, str] = {
    **{definition: f"{name} score" for name, definition in CF_HEADLINES.items()}, CF_SCORE: "score (hmean)",
    **{f"{definition}_magnitude": f"{name} magnitude" for name, definition in CF_HEADLINES.items()},
    "fluency": "fluency (n-gram entropy)",
    "reliability_acc": "reliability (token acc)", "generalization_acc": "generalization (token acc)",
    "locality_agree": "locality (agreement)", "portability_acc": "portability (token acc)",
    "portability_multihop": "multi-hop accuracy",
    **{name: f"{family} (generative)" for name, family in GENERATIVE.items()},
    "gen_portability_multihop": "multi-hop (generative)", "gen_locality_agree": "locality (generation unchanged)",
}
LABELS = {**LABELS, **{RAW + k: f"{v}, raw" for k, v in LABELS.items()},
          **{RAW + name: f"{LABELS[definition]}, raw" for name, definition in HEADLINES.items()}}


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
    # The pre-edit scores by edit id, for a second run on the same requests to reuse (not saved).
    pre_scores: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

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

"""Benchmark summaries (CounterFact, zsRE, MQuAKE) as the field reports them.

What each benchmark's summary lists, under the names the reference papers use, and a
run's result. Running the editors over the cases is a use case: ``kedit_vc.ops.bench``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from kedit_vc.eval.report import FORMS_NOTE, EvalReport

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

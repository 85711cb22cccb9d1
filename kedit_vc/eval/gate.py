"""The CI gate: thresholds from specs' ``expect`` lines and from flags, checked on a report.

Exit codes follow ``kvc check``: 0 when every threshold holds, 1 when one falls short (or
its metric is missing from the report: an unmeasured promise is not kept), 2 for usage
errors such as an unknown metric name (raised as ``UsageError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from kedit_vc.compiler.plan import Expectation
from kedit_vc.errors import UsageError
from kedit_vc.eval.registry import check_metric_name
from kedit_vc.eval.report import EvalReport

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_OPS = (">=", ">", "<=", "<")


@dataclass(frozen=True)
class Threshold:
    """One promise: ``metric op threshold``, and where it came from (spec or flag)."""

    metric: str
    op: str
    threshold: float
    source: str

    def holds(self, value: float) -> bool:
        return Expectation(self.metric, self.op, self.threshold).holds(value)


@dataclass(frozen=True)
class GateRow:
    threshold: Threshold
    value: float | None

    @property
    def ok(self) -> bool:
        return self.value is not None and self.threshold.holds(self.value)


@dataclass(frozen=True)
class GateResult:
    rows: tuple[GateRow, ...]

    @property
    def failed(self) -> tuple[GateRow, ...]:
        return tuple(r for r in self.rows if not r.ok)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed else EXIT_OK

    def table(self, only_failed: bool = False) -> str:
        """metric, requirement, measured value, verdict, source; one line per threshold."""
        rows = self.failed if only_failed else self.rows
        lines = [f"{'metric':<28} {'required':>12} {'value':>9}  {'result':<7} source"]
        for r in rows:
            t = r.threshold
            value = "missing" if r.value is None else f"{r.value:.4f}"
            lines.append(f"{t.metric:<28} {t.op + ' ' + format(t.threshold, 'g'):>12} {value:>9}  "
                         f"{'ok' if r.ok else 'FAIL':<7} {t.source}")
        return "\n".join(lines)

    def summary(self) -> str:
        n, bad = len(self.rows), len(self.failed)
        return f"all {n} thresholds hold" if not bad else f"{bad} of {n} thresholds fell short"


def thresholds_from(
    expectations: Iterable[Expectation] = (),
    minimums: Mapping[str, float] | None = None,
    expectation_source: str = "spec",
) -> list[Threshold]:
    """Thresholds from plan expectations and from ``--min-METRIC`` flags (``metric >= x``).

    Unknown metric names and operators raise ``UsageError`` (exit 2).
    """
    out = []
    for e in expectations:
        if e.op not in _OPS:
            raise UsageError(f"unknown comparison {e.op!r} for {e.metric}; use one of {', '.join(_OPS)}")
        out.append(Threshold(check_metric_name(e.metric), e.op, e.threshold, expectation_source))
    for metric, value in (minimums or {}).items():
        out.append(Threshold(check_metric_name(metric), ">=", float(value), "flag"))
    return out


def check(report: EvalReport, thresholds: Iterable[Threshold]) -> GateResult:
    """Compare each threshold with the report's post-edit aggregate of its metric."""
    rows = tuple(GateRow(t, report.metrics.get(t.metric)) for t in thresholds)
    if not rows:
        raise UsageError("nothing to check: no expect lines in the spec and no --min-METRIC flags")
    return GateResult(rows)


def run_gate(
    report: EvalReport,
    expectations: Iterable[Expectation] = (),
    minimums: Mapping[str, float] | None = None,
) -> GateResult:
    """What ``kvc check`` does once it has a report: thresholds from both sources, checked."""
    return check(report, thresholds_from(expectations, minimums))

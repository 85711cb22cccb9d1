"""Summaries of probe scores: aggregate metrics and per-edit rows, JSON-able."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from kedit_vc.eval.registry import DERIVED, METRICS, RAW
from kedit_vc.eval.scores import EditScores, ProbeScores

REPORT_VERSION = 1


@dataclass(frozen=True)
class EditRow:
    """One edit's metric values (metrics without samples for this edit are left out)."""

    edit_id: str
    metrics: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"edit_id": self.edit_id, "metrics": dict(sorted(self.metrics.items()))}


@dataclass(frozen=True)
class EvalReport:
    """Aggregate metrics after the edit, the same before it, and per-edit rows.

    ``counts[name]`` is how many edits (or pooled samples) an aggregate averages, so a
    reader can tell 0.0 from "no probes of that kind". ``forms`` says which prompt forms
    were scored (``kedit_vc.eval.scores.PROMPT_FORMS``): ``raw_*`` metrics exist only for
    "both" and "same" (same: the tokenizer adds its own BOS, raw = prefixed, scored once).
    """

    metrics: Mapping[str, float]
    pre_metrics: Mapping[str, float] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    rows: tuple[EditRow, ...] = ()
    forms: str = "prefixed"

    @property
    def n_edits(self) -> int:
        return len(self.rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": REPORT_VERSION,
            "n_edits": self.n_edits,
            "metrics": dict(sorted(self.metrics.items())),
            "pre_metrics": dict(sorted(self.pre_metrics.items())),
            "counts": dict(sorted(self.counts.items())),
            "rows": [r.to_json() for r in self.rows],
            **({"forms": self.forms} if self.forms != "prefixed" else {}),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EvalReport":
        if data.get("version") != REPORT_VERSION:
            raise ValueError(f"unsupported report version {data.get('version')!r} (expected {REPORT_VERSION})")
        return cls(
            metrics={k: float(v) for k, v in data["metrics"].items()},
            pre_metrics={k: float(v) for k, v in data.get("pre_metrics", {}).items()},
            counts={k: int(v) for k, v in data.get("counts", {}).items()},
            rows=tuple(EditRow(r["edit_id"], {k: float(v) for k, v in r["metrics"].items()})
                       for r in data.get("rows", ())),
            forms=str(data.get("forms", "prefixed")),
        )

    @classmethod
    def loads(cls, text: str) -> "EvalReport":
        return cls.from_json(json.loads(text))

    def table(self, names: list[str] | None = None) -> str:
        """A plain-text table: metric, pre-edit value, post-edit value, n."""
        names = names if names is not None else sorted(self.metrics)
        lines = [f"{'metric':<30} {'pre':>9} {'post':>9} {'n':>6}"]
        for name in names:
            pre = self.pre_metrics.get(name)
            post = self.metrics.get(name)
            lines.append(f"{name:<30} {_fmt(pre):>9} {_fmt(post):>9} {self.counts.get(name, ''):>6}")
        return "\n".join(lines)

    def forms_table(self, names: list[str], show: str = "both") -> str:
        """A table with a column pair per prompt form: metric, pre/post prefixed, pre/post raw, n.

        ``names`` are base names; the raw columns read ``raw_<name>``. ``show`` is
        "prefixed", "raw" or "both" (which column pairs to print). A line under the
        table says what "raw" means for this report's model.
        """
        pairs = {"prefixed": [("", "pre", "post")], "raw": [(RAW, "raw pre", "raw post")]}
        columns = pairs["prefixed"] + pairs["raw"] if show == "both" else pairs[show]
        head = f"{'metric':<22}" + "".join(f" {pre:>9} {post:>9}" for _, pre, post in columns) + f" {'n':>6}"
        lines = [head]
        for name in names:
            cells = ""
            for prefix, _, _ in columns:
                cells += f" {_fmt(self.pre_metrics.get(prefix + name)):>9} {_fmt(self.metrics.get(prefix + name)):>9}"
            count = self.counts.get(name, self.counts.get(RAW + name, ""))
            lines.append(f"{name:<22}{cells} {count:>6}")
        if show != "prefixed":
            lines.append(FORMS_NOTE.get(self.forms, FORMS_NOTE["prefixed"]))
        return "\n".join(lines)


#: What the raw columns mean, by ``EvalReport.forms``.
FORMS_NOTE: Mapping[str, str] = {
    "both": "raw = the prompt as a user types it (no prefix token); the other columns: as the editor saw it",
    "same": "raw = prefixed: the tokenizer adds its own BOS, so both forms are the same tokens (scored once)",
    "prefixed": "raw prompts were not scored",
}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _aggregate(
    post: ProbeScores, pre: ProbeScores | None
) -> tuple[dict[str, float], dict[str, int], list[EditRow]]:
    pre_by_id = pre.by_id() if pre is not None else {}
    per_edit: dict[str, list[float]] = {name: [] for name in METRICS}
    pooled: dict[str, list[float]] = {name: [] for name in METRICS}
    rows = []
    for edit in post.edits:
        reference: EditScores | None = pre_by_id.get(edit.edit_id)
        values = {}
        for name, metric in METRICS.items():
            samples = metric.samples(edit, reference)
            if samples:
                values[name] = sum(samples) / len(samples)
                per_edit[name].append(values[name])
                pooled[name].extend(samples)
        rows.append(EditRow(edit.edit_id, values))
    metrics, counts = {}, {}
    for name, metric in METRICS.items():
        aggregated = pooled[name] if metric.pool else per_edit[name]
        if aggregated:
            metrics[name] = sum(aggregated) / len(aggregated)
            counts[name] = len(aggregated)
    for name, derived in DERIVED.items():
        if all(i in metrics for i in derived.inputs):
            metrics[name] = derived.combine([metrics[i] for i in derived.inputs])
            counts[name] = min(counts[i] for i in derived.inputs)
    return metrics, counts, rows


def summarize(
    post: ProbeScores,
    pre: ProbeScores | None = None,
    extra: Mapping[str, float] | None = None,
    pre_extra: Mapping[str, float] | None = None,
) -> EvalReport:
    """Aggregate post-edit scores (agreement metrics compare with ``pre``).

    ``pre`` is also summarised on its own to give the pre-edit values shown beside the
    post-edit ones. ``extra``/``pre_extra`` carry model-level measurements (fluency,
    perplexity, seconds, memory, delta bytes) into the report.
    """
    metrics, counts, rows = _aggregate(post, pre)
    pre_metrics: dict[str, float] = {}
    if pre is not None:
        pre_metrics, _, _ = _aggregate(pre, None)
    metrics.update(extra or {})
    pre_metrics.update(pre_extra or {})
    return EvalReport(metrics=metrics, pre_metrics=pre_metrics, counts=counts, rows=tuple(rows), forms=post.forms)

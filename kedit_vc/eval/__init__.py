"""Evaluation: probe scoring, the metrics registry, reports, the CI gate and benchmark summaries.

    scores = score_requests(model, tokenizer, requests, batch_size=16)   # ProbeScores
    report = summarize(post=scores, pre=scores_before)                     # EvalReport
    result = check(report, thresholds_from(plan.expectations, {"locality": 0.95}))

Names are imported on first use (PEP 562), so the metric vocabulary
(``kedit_vc.eval.registry``) can be read without importing torch: the spec language
and the CLI's flags read their metric names from it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GateResult": "gate", "Threshold": "gate", "check": "gate", "thresholds_from": "gate",
    "DERIVED": "registry", "HEADLINES": "registry", "METRICS": "registry", "MODEL_METRICS": "registry",
    "Metric": "registry", "register_metric": "registry",
    "EditRow": "report", "EvalReport": "report", "summarize": "report",
    "EditScores": "scores", "ProbeScore": "scores", "ProbeScores": "scores",
    "score_requests": "scoring",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)

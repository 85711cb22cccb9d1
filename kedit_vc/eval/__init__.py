"""Evaluation: probe scoring, the metrics registry, reports, the CI gate and benchmarks.

    scores = score_requests(model, tokenizer, requests, batch_size=16)   # ProbeScores
    report = summarize(post=scores, pre=scores_before)                     # EvalReport
    result = check(report, thresholds_from(plan.expectations, {"locality": 0.95}))
"""

from kedit_vc.eval.gate import GateResult, Threshold, check, thresholds_from
from kedit_vc.eval.registry import DERIVED, HEADLINES, METRICS, MODEL_METRICS, Metric, register_metric
from kedit_vc.eval.report import EditRow, EvalReport, summarize
from kedit_vc.eval.scores import EditScores, ProbeScore, ProbeScores
from kedit_vc.eval.scoring import score_requests

__all__ = [
    "DERIVED", "HEADLINES", "METRICS", "MODEL_METRICS", "EditRow", "EditScores", "EvalReport", "GateResult",
    "Metric", "ProbeScore", "ProbeScores", "Threshold", "check", "register_metric", "score_requests",
    "summarize", "thresholds_from",
]

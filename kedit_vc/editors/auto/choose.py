"""Which candidate wins: a user-weighted average of metrics on the edit's own probes.

Kept apart from running the editors (``algorithm``) so the arithmetic — weights named
by the user, renormalised over the metrics that have probes, ties going to the first
candidate — is plain functions of numbers that a test can check by hand. No model here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Collection, Mapping, Sequence

from kedit_vc.editors.registry import build_hparams, check_hparams, method_names, require_method
from kedit_vc.errors import UsageError
from kedit_vc.eval.registry import CF_HEADLINES, DERIVED, HEADLINES, METRICS

from .hparams import AutoHparams

#: What ``weights`` default to: the four headline families, equally.
DEFAULT_WEIGHTS: Mapping[str, float] = dict.fromkeys(HEADLINES, 1.0)



def metric_of(name: str) -> str:
    """The registered probe metric a weight's name stands for (UsageError if none).

    Model-level measurements (fluency, perplexity) are not taken on probes, so they
    cannot be weighed here.
    """
    metric = CF_HEADLINES.get(name, name)  # efficacy -> reliability_cf, ...
    if metric not in METRICS and metric not in DERIVED:
        known = ", ".join(sorted({*METRICS, *DERIVED}))
        raise UsageError(f"auto weights: {name!r} is not a metric of the edit's probes; use one of: {known}")
    return metric


def candidate_settings(hp: AutoHparams) -> list[tuple[str, Any]]:
    """``(method, hyperparameters)`` for each candidate, checked before any model work.

    ``candidates`` may also come from ``--hparam`` as a comma-separated string.
    """
    names = hp.candidates.split(",") if isinstance(hp.candidates, str) else list(hp.candidates)
    names = [str(n).strip().lower() for n in names]
    editors = [m for m in method_names() if m != "auto"]
    if not names:
        raise UsageError(f"auto needs at least one candidate method; known methods: {', '.join(editors)}")
    own = dict(hp.hparams or {})
    for name in [*names, *own]:
        require_method(name, among=editors, lead=f"auto: {name!r} is not an editing method")
    if len(set(names)) != len(names):
        raise UsageError(f"auto: a candidate is listed twice in {', '.join(names)}")
    out = []
    for name in names:
        try:
            settings = build_hparams(name, own.get(name) or {})
        except TypeError as error:
            raise UsageError(f"auto: {name} has no such hyperparameter ({error})") from None
        for problem in check_hparams(name, settings):
            raise UsageError(f"auto: {name}: {problem}")
        out.append((name, settings))
    return out


def usable_weights(weights: Mapping[str, float] | None, available: Collection[str]
                   ) -> tuple[dict[str, float], tuple[str, ...]]:
    """Weights normalised to sum 1 over the metrics that have probes, and those left out.

    ``weights``: metric name as the user wrote it -> weight >= 0 (None: ``DEFAULT_WEIGHTS``).
    ``available``: registered metric names measured on this edit's probes.
    """
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                or weight < 0:
            raise UsageError(f"auto weights: {name} = {weight!r}; a weight must be a number >= 0")
    kept = {name: float(w) for name, w in weights.items() if metric_of(name) in available}
    left_out = tuple(name for name in weights if name not in kept)
    total = sum(kept.values())
    if total <= 0:
        raise UsageError("auto weights: no weighted metric has probes in this edit"
                         + (f" ({', '.join(left_out)} left out)" if left_out else "")
                         + "; weigh reliability, which every edit has")
    return {name: w / total for name, w in kept.items()}, left_out


def weighted_score(metrics: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """``sum(w * metric)`` over normalised ``weights`` (names as written, aliases allowed)."""
    return sum(w * metrics[metric_of(name)] for name, w in weights.items())


@dataclass(frozen=True)
class Trial:
    """One candidate's run: its post-edit metric aggregates and editing time."""

    method: str
    metrics: Mapping[str, float]
    seconds: float


@dataclass(frozen=True)
class Choice:
    """The verdict and what justified it; ``scores`` line up with ``trials``."""

    chosen: str
    weights: Mapping[str, float]
    left_out: tuple[str, ...]
    trials: tuple[Trial, ...]
    scores: tuple[float, ...]

    @property
    def label(self) -> str:
        """How the method is recorded in a commit: ``auto→rome``."""
        return f"auto→{self.chosen}"

    def to_json(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "weights": dict(self.weights),
            "left_out": list(self.left_out),
            "candidates": [{"method": t.method, "score": s, "seconds": t.seconds,
                            "metrics": {n: t.metrics[metric_of(n)] for n in self.weights}}
                           for t, s in zip(self.trials, self.scores)],
        }

    def table(self) -> str:
        """candidate, each weighted metric, weighted score, seconds; the chosen row marked."""
        names = list(self.weights)
        widths = [max(9, len(n)) for n in names]
        head = "  ".join(f"{n:>{w}}" for n, w in zip(names, widths))
        lines = ["auto: editing method chosen by weighted score on the edit's own probes",
                 f"{'candidate':<12}{head}  {'score':>7}  {'seconds':>7}"]
        for trial, score in zip(self.trials, self.scores):
            cells = "  ".join(f"{trial.metrics[metric_of(n)]:>{w}.4f}" for n, w in zip(names, widths))
            mark = "  <- chosen" if trial.method == self.chosen else ""
            lines.append(f"{trial.method:<12}{cells}  {score:>7.4f}  {trial.seconds:>7.1f}{mark}")
        lines.append("weights: " + ", ".join(f"{n} {w:.3g}" for n, w in self.weights.items()))
        if self.left_out:
            lines.append(f"left out (no probes in this edit): {', '.join(self.left_out)}; "
                         "the other weights renormalised to sum 1")
        return "\n".join(lines)


def choose(trials: Sequence[Trial], weights: Mapping[str, float] | None = None) -> Choice:
    """The candidate with the highest weighted score; a tie goes to the earlier candidate.

    A metric is weighed only if every trial measured it (the candidates share the
    probes, so a metric is missing from all or none).
    """
    if not trials:
        raise UsageError("auto: no candidate to choose from")
    available = set.intersection(*(set(t.metrics) for t in trials))
    used, left_out = usable_weights(weights, available)
    scores = tuple(weighted_score(t.metrics, used) for t in trials)
    best = 0
    for i, score in enumerate(scores):
        if score > scores[best]:
            best = i
    return Choice(trials[best].method, used, left_out, tuple(trials), scores)

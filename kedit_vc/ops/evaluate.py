"""Evaluating the live edits of a commit, and of every commit in turn (``kvc eval``).

``Evaluator`` loads the base model only when a score is not cached, moves it to the
commit asked for (base + live deltas) and scores the probes stored with each live
edit's commit. Pre-edit values come from the base model, so ``locality`` is agreement
with the unedited model and the ``pre`` column is what the model said before any edit.
By default probes are scored both teacher-forced and by greedy generation (``gen_*``), on
prefixed and raw prompts (``raw_*``); ``prompts="prefixed"`` skips the raw form and
``generative=False`` the generations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.eval.report import EvalReport, summarize
from kedit_vc.eval.scores import ProbeScores

from .history import LiveEdit, live_edits
from .progress import Stages
from .scorecache import ScoreCache

if TYPE_CHECKING:
    from kedit_vc.models import LoadedModel
    from kedit_vc.store import CommitRecord, Store

    from .weights import Weights


@dataclass(frozen=True)
class Evaluation:
    """Scores and summary of a set of edits at one commit."""

    sha: str
    requests: tuple[EditRequest, ...]
    post: ProbeScores
    pre: ProbeScores
    report: EvalReport

    def to_json(self) -> dict:
        return {"commit": self.sha, "edit_ids": [r.edit_id for r in self.requests], **self.report.to_json()}


class Evaluator:
    """Scores probe sets at commits, through the score cache; loads the model on a miss."""

    def __init__(self, store: "Store", *, progress: bool = False, batch_size: int = 16,
                 prompts: str = "both", generative: bool = True) -> None:
        from kedit_vc.eval.scoring import PROMPT_CHOICES

        if prompts not in PROMPT_CHOICES:
            raise ValueError(f"prompts must be one of {', '.join(PROMPT_CHOICES)}, not {prompts!r}")
        self.store = store
        self.prompts = "prefixed" if prompts == "prefixed" else "both"  # raw is scored beside prefixed
        self.generative = generative
        variant = "" if (self.prompts, generative) == ("prefixed", False) else f"{self.prompts}+gen{int(generative)}"
        self.cache = ScoreCache(store, variant)
        self.stages = Stages(progress)
        self.progress = progress
        self.batch_size = batch_size
        self._loaded: "LoadedModel | None" = None
        self._weights: "Weights | None" = None
        self._at: str | None = None  # the commit the weights are at (None: unknown)

    @property
    def loaded(self) -> "LoadedModel":
        return self.load()

    def load(self) -> "LoadedModel":
        """The base model, loaded (at base weights) on first use."""
        if self._loaded is None:
            from .weights import Weights, load_base

            with self.stages.stage(f"loading {self.store.model_ref}"):
                self._loaded = load_base(self.store, progress=self.progress)
            self._weights = Weights(self._loaded.model)
            self._at = "base"
        return self._loaded

    @property
    def weights(self) -> "Weights":
        self.load()
        assert self._weights is not None
        return self._weights

    def move_to(self, sha: str) -> None:
        """Put the model at commit ``sha``: base + its live deltas (HEAD's from the cache), its
        live non-weight patches (codebooks) attached: the model ``load_edited`` gives."""
        if self._at == sha:
            return
        with self.stages.stage(f"materialising {sha[:10]}"):
            self.weights.set_revision(self.store, sha)
        self._moved(sha)

    def to_base(self) -> None:
        if self._at != "base":
            self.weights.reset()
            self._moved("base")

    def _moved(self, at: str) -> None:
        """The weights are now ``at``'s: context templates generated from other weights are
        dropped, so an editor sees what a fresh process at ``at`` would (and a resumed
        ``--batch-size`` run equals an uninterrupted one)."""
        from kedit_vc.editors.common.templates import forget_templates

        forget_templates(self.loaded.model)
        self._at = at

    def mark_changed(self) -> None:
        """The caller changed the weights (an edit was applied): forget where they are."""
        self._at = None

    def score_now(self, requests: Sequence[EditRequest]) -> ProbeScores:
        """Score ``requests`` on the weights as they are."""
        from kedit_vc.eval.scoring import score_requests

        if not requests:
            return ProbeScores(())
        with self.stages.stage(f"scoring {sum(len(r.probes) for r in requests)} probes"):
            return score_requests(self.loaded.model, self.loaded.tokenizer, requests, batch_size=self.batch_size,
                                  prompts=self.prompts, generative=self.generative)

    def scores_at(self, sha: str, requests: Sequence[EditRequest]) -> ProbeScores:
        cached = self.cache.get(sha, requests)
        if cached is not None:
            return cached
        self.move_to(sha)
        scores = self.score_now(requests)
        self.cache.put(sha, requests, scores)
        return scores

    def base_scores(self, requests: Sequence[EditRequest]) -> ProbeScores:
        state = f"base:{self.store.fingerprint}"
        cached = self.cache.get(state, requests)
        if cached is not None:
            return cached
        self.to_base()
        scores = self.score_now(requests)
        self.cache.put(state, requests, scores)
        return scores

    def evaluate(self, rev: str = "HEAD", requests: Sequence[EditRequest] | None = None,
                 sample: int | None = None, seed: int = 0) -> Evaluation:
        """The live edits at ``rev`` (or ``requests``) scored there and on the base model.

        ``sample``: score a seeded random sample of that many edits (all when fewer), so a
        store with thousands of live edits answers in seconds.
        """
        sha = self.store.resolve(rev)
        chosen = tuple(e.request for e in live_edits(self.store, sha)) if requests is None else tuple(requests)
        if sample is not None and sample < len(chosen):
            import random

            keep = sorted(random.Random(seed).sample(range(len(chosen)), sample))
            chosen = tuple(chosen[i] for i in keep)
        post = self.scores_at(sha, chosen)
        pre = self.base_scores(chosen)
        return Evaluation(sha, chosen, post, pre, summarize(post, pre))


@dataclass(frozen=True)
class HistoryPoint:
    """The live edits' metrics right after one commit: a point of the sequential-editing curve."""

    record: "CommitRecord"
    n_live: int
    evaluation: Evaluation


def evaluate_history(evaluator: Evaluator, rev: str = "HEAD") -> list[HistoryPoint]:
    """Every commit after the initial one on ``rev``'s first-parent chain, oldest first."""
    store = evaluator.store
    points = []
    chain = store.chain(rev)[1:]
    for sha in evaluator.stages.track(chain, "evaluating history", total=len(chain)):
        evaluation = evaluator.evaluate(sha)
        points.append(HistoryPoint(store.read_commit(sha), len(evaluation.requests), evaluation))
    return points


def live_requests(edits: Sequence[LiveEdit]) -> tuple[EditRequest, ...]:
    return tuple(e.request for e in edits)

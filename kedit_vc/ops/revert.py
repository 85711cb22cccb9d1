"""``kvc revert REV``: a commit whose delta is the exact inverse of REV's, then a check.

The live edits that remain are scored before and after the revert: any that held before
(every token of its new object is the model's top prediction on its rewrite prompt) and
no longer holds is reported. The reverted edits are scored on the new weights beside the
base model, to show whether their prompts are back to the original predictions.
Evaluation runs before the write, so the commit records it and the store is untouched
until the very end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.errors import StoreError, UsageError
from kedit_vc.eval.report import EvalReport, summarize
from kedit_vc.eval.scores import ProbeScores
from kedit_vc.store import CommitInput

from .evaluate import Evaluator
from .history import commit_requests, live_edits

if TYPE_CHECKING:
    from kedit_vc.compiler.plan import EditRequest
    from kedit_vc.store import Store

#: An edit holds when its rewrite probes' token accuracy reaches this.
HOLDS = 1.0


def holding(report: EvalReport) -> set[str]:
    return {row.edit_id for row in report.rows if row.metrics.get("reliability", 0.0) >= HOLDS}


@dataclass(frozen=True)
class RevertResult:
    sha: str
    target: str
    before: EvalReport          # remaining live edits at the old HEAD
    after: EvalReport           # the same edits after the revert
    stopped: tuple[str, ...]    # edit ids that held before and not after
    reverted: tuple["EditRequest", ...]
    restored: dict[str, bool]   # reverted edit id -> rewrite predictions equal the base model's


def _same_predictions(now: ProbeScores, base: ProbeScores) -> dict[str, bool]:
    out = {}
    for a, b in zip(now.edits, base.edits):
        rewrites = [(p, q) for p, q in zip(a.probes, b.probes) if p.kind == "rewrite"]
        out[a.edit_id] = all(p.argmax_ids == q.argmax_ids for p, q in rewrites)
    return out


def side_patches_after(store: "Store", head: str, target: str) -> list:
    """The non-weight patches live once ``target`` is reverted on ``head``: the live ones but
    its own, or, when it is not live (a revert of a revert), the live ones plus its copy."""
    live = store.live_commits(head)
    side = [p for sha in live if sha != target for p in store.read_commit(sha).patches()]
    return side if target in live else side + store.read_commit(target).patches()


def revert(store: "Store", rev: str, *, message: str | None = None, wait: bool = False,
           progress: bool = False, eval_batch_size: int = 16) -> RevertResult:
    with store.lock(wait):
        head = store.head()
        target = store.resolve(rev)
        record = store.read_commit(target)
        if record.op == "init":
            raise UsageError(f"{rev} is the initial commit: it has no edit to revert")
        if target not in store.chain(head):
            raise StoreError(f"{rev} ({target[:10]}) is not in the history of HEAD (was it squashed? see `kvc log`)")
        for sha in store.live_commits(head):  # a merge's delta already undid the commits it re-solved
            merged = store.manifest(sha).get("extra", {}).get("merge", {})
            if target in merged.get("dropped", ()):
                raise StoreError(f"{rev} ({target[:10]}) was re-solved by merge {sha[:10]}, whose delta already "
                                 f"removed its own; revert the merge ({sha[:10]}) first, or commit a correction")
        before_edits = live_edits(store, head)
        reverted_requests = commit_requests(store, target)
        reverted_ids = {r.edit_id for r in reverted_requests}
        remaining = tuple(e.request for e in before_edits if e.sha != target and e.request.edit_id not in reverted_ids)

        evaluator = Evaluator(store, progress=progress, batch_size=eval_batch_size)
        before = evaluator.evaluate(head, remaining)
        delta = record.delta()
        assert delta is not None
        evaluator.weights.set_deltas([store.live_sum(head), delta.inverse()])
        evaluator.weights.set_side(side_patches_after(store, head, target))
        evaluator.mark_changed()
        after_post = evaluator.score_now(remaining)
        after = summarize(after_post, before.pre)
        reverted_now = evaluator.score_now(reverted_requests)
        restored = _same_predictions(reverted_now, evaluator.base_scores(reverted_requests))
        stopped = tuple(sorted(holding(before.report) - holding(after)))

        summary = record.message.splitlines()[0] if record.message else record.short
        # Reverting a revert brings its edit back: carry that edit's keys, so history-aware
        # editors protect it again (a plain revert writes none; the store drops the reverted ones).
        keys = store.read_commit(record.reverts).keys() if record.op == "revert" and record.reverts else None
        sha = store.write_commit(
            CommitInput(message or f"Revert {record.short}: {summary}", op="revert", reverts=target,
                        metrics={**after.to_json(), "stopped_holding": list(stopped),
                                 "reverted_restored": restored}, keys=keys or None),
            expected_head=head)
    return RevertResult(sha, target, before.report, after, stopped, reverted_requests, restored)

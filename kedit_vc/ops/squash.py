"""``kvc squash A..B``: the live edits of a range re-solved as one batch (``BATCH_METHOD``).

The commits after A up to B are replaced by one commit whose parent is A and whose
delta is the batch method (MEMIT) run once, on A's weights, over every edit still live at B that those
commits carry. Commits after B are replayed on top; the old history stays reachable
under ``refs/kvc/squashed/<old head>``. Metrics of the range's edits are measured at B
(before) and on A + the new delta (after), both against the base model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from kedit_vc.compiler.plan import EditorCall, Plan
from kedit_vc.editors.defaults import BATCH_METHOD
from kedit_vc.errors import UsageError
from kedit_vc.eval.efficiency import measure
from kedit_vc.eval.report import EvalReport, summarize
from kedit_vc.store import CommitInput

from .commit import run_plan
from .evaluate import Evaluator
from .history import live_edits, supersedes
from .plans import check_call

if TYPE_CHECKING:
    from kedit_vc.store import Store

METHOD = BATCH_METHOD


@dataclass(frozen=True)
class SquashResult:
    sha: str
    base: str
    tip: str
    commits: tuple[str, ...]
    edit_ids: tuple[str, ...]
    before: EvalReport
    after: EvalReport


def parse_range(store: "Store", text: str) -> tuple[str, str]:
    """``A..B`` (B defaults to HEAD) -> (sha of A, sha of B)."""
    left, sep, right = text.partition("..")
    if not sep or not left:
        raise UsageError(f"squash range {text!r}: write it as A..B (e.g. HEAD~3..HEAD), like git")
    return store.resolve(left), store.resolve(right or "HEAD")


def squash(store: "Store", range_text: str, *, message: str | None = None,
           hparams: Mapping[str, Any] | None = None, wait: bool = False, progress: bool = False,
           eval_batch_size: int = 16) -> SquashResult:
    call_hparams = dict(hparams or {})
    check_call(EditorCall(METHOD, call_hparams), "--hparam")
    with store.lock(wait):
        head = store.head()
        base, tip = parse_range(store, range_text)
        chain = store.chain(head)
        if base not in chain or tip not in chain or chain.index(base) >= chain.index(tip):
            raise UsageError(f"squash range {range_text!r}: A must be an ancestor of B on HEAD's history")
        inside = chain[chain.index(base) + 1: chain.index(tip) + 1]
        edits = [e for e in live_edits(store, tip) if e.sha in inside]
        if not edits:
            raise UsageError(f"squash range {range_text!r} has no live edits to re-solve")
        requests = tuple(e.request for e in edits)
        plan = Plan(calls=(EditorCall(METHOD, call_hparams, requests),))

        evaluator = Evaluator(store, progress=progress, batch_size=eval_batch_size)
        before = evaluator.evaluate(tip, requests)
        evaluator.move_to(base)
        with measure() as watch:
            delta, keys, infos = run_plan(evaluator, plan, store.live_keys(base), progress)
        assert watch.result is not None
        after = summarize(evaluator.score_now(requests), before.pre,
                          extra={**watch.result.as_metrics(), "delta_bytes": float(delta.summary().stored_bytes)})
        replaced = set().union(*(supersedes(store, sha) for sha in inside))
        sha = store.write_commit(
            CommitInput(
                message or f"Squash {len(inside)} commits ({len(requests)} edits) into one MEMIT batch",
                delta=delta, op="squash", squash_range=(base, tip), plan=plan.to_json(),
                metrics={**after.to_json(), "before": before.report.to_json()},
                method=METHOD, hparams=call_hparams, edit_ids=tuple(r.edit_id for r in requests),
                timings={"edit_s": round(watch.result.seconds, 4)}, keys=keys,
                extra={"editor_info": infos, "supersedes": sorted(replaced)}),
            expected_head=head)
    return SquashResult(sha, base, tip, tuple(inside), tuple(r.edit_id for r in requests), before.report, after)

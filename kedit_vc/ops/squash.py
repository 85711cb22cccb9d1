"""``kvc squash A..B``: the live edits of a range re-solved as one batch (``BATCH_METHOD``).

Weight edits are re-solved; edits held by non-weight patches (GRACE codebooks) cannot be
folded into weights, so their patches are copied into the squash commit as they are, and
its message and manifest (``extra.kept_patches``) say so.

The commits after A up to B are replaced by one commit whose parent is A and whose
delta is the batch method (MEMIT) run once, on A's weights, over every edit still live at B that those
commits carry. Commits after B are replayed on top; the old history stays reachable
under ``refs/kvc/squashed/<old head>``. Metrics of the range's edits are measured at B
(before) and on A + the new delta (after), both against the base model.

A squash is gated: every check an edit passed at B (its rewrite prompts' teacher-forced
answer, its paraphrases', and the greedy continuation of its rewrite prompt) must still
pass after, or nothing is written and ``SquashRefused`` lists what would be lost.
``allow_loss`` commits anyway and records the weakened edits in the manifest;
``dry_run`` measures and writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from kedit_vc.compiler.plan import EditorCall, Plan
from kedit_vc.editors.defaults import BATCH_METHOD
from kedit_vc.errors import KvcError, UsageError
from kedit_vc.eval.efficiency import measure
from kedit_vc.eval.report import EvalReport, summarize
from kedit_vc.store import CommitInput

from .commit import execute_plan
from .evaluate import Evaluation, Evaluator
from .history import live_edits, supersedes
from .plans import check_call

if TYPE_CHECKING:
    import torch

    from kedit_vc.compiler.plan import EditRequest
    from kedit_vc.delta import Delta
    from kedit_vc.store import Store

METHOD = BATCH_METHOD


@dataclass(frozen=True)
class Loss:
    """One check an edit passed before the squash and fails after it."""

    edit_id: str
    subject: str
    target: str
    check: str      # reliability | generalization | gen_reliability

    def to_json(self) -> dict[str, str]:
        return {"edit_id": self.edit_id, "subject": self.subject, "target": self.target, "check": self.check}


@dataclass(frozen=True)
class SquashResult:
    """What a squash measured (``sha`` is None for a dry run or a refused squash)."""

    sha: str | None
    base: str
    tip: str
    commits: tuple[str, ...]
    edit_ids: tuple[str, ...]
    before: EvalReport
    after: EvalReport
    losses: tuple[Loss, ...] = ()
    method: str = METHOD


class SquashRefused(KvcError):
    """The squash would weaken edits that held; nothing was written (exit 1)."""

    exit_code = 1

    def __init__(self, result: SquashResult) -> None:
        self.result = result
        n = len({loss.edit_id for loss in result.losses})
        super().__init__(f"the squash would weaken {n} edit(s) that held before (table above); nothing was "
                         "written. Try other --hparam settings or --method, or pass --allow-loss to accept it")


#: Per-edit metrics a squash keeps (the registry's per-edit rows): an edit at 1.0 on one
#: before (every rewrite / paraphrase target token the argmax; every rewrite prompt's greedy
#: continuation holding the new object) must be at 1.0 after.
KEPT = ("reliability", "gen_reliability", "generalization")


def find_losses(requests: Sequence["EditRequest"], before: EvalReport, after: EvalReport) -> list[Loss]:
    """Kept metrics an edit held (1.0) in ``before`` and misses in ``after``, in request order."""
    old = {row.edit_id: row.metrics for row in before.rows}
    new = {row.edit_id: row.metrics for row in after.rows}
    losses = []
    for request in requests:
        for check in KEPT:
            if old.get(request.edit_id, {}).get(check) == 1.0 and new.get(request.edit_id, {}).get(check) != 1.0:
                losses.append(Loss(request.edit_id, request.subject, request.target_new, check))
    return losses


@dataclass(frozen=True)
class Resolved:
    """A plan re-solved in one go on the evaluator's weights, scored, and compared with before.

    ``delta``: what the plan's calls wrote (the weights they started from + it = after);
    ``keys``: layer -> keys [n, d_in] written; ``carried``: the calls' carried contributions.
    """

    delta: "Delta"
    keys: "dict[int, torch.Tensor]"
    infos: list[dict[str, Any]]
    carried: "dict[str, torch.Tensor]"
    after: EvalReport
    losses: tuple[Loss, ...]
    seconds: float


def resolve(evaluator: Evaluator, plan: Plan, before: "Evaluation", preserved: "Mapping[int, torch.Tensor]",
            progress: bool, carried: "Mapping[str, torch.Tensor] | None" = None) -> Resolved:
    """Run ``plan`` on the weights the evaluator is at (the caller moved them), score its
    requests, and list the kept checks that held in ``before`` and fail now (``find_losses``).

    Shared by squash, merge and cherry-pick: each picks the starting weights and the
    ``before`` it answers to; all gate the same way.
    """
    requests = plan.requests
    with measure() as watch:
        run = execute_plan(evaluator, plan, preserved, progress, carried)
    assert watch.result is not None
    after = summarize(evaluator.score_now(requests), before.pre,
                      extra={**watch.result.as_metrics(), "delta_bytes": float(run.delta.summary().stored_bytes)})
    losses = tuple(find_losses(requests, before.report, after))
    return Resolved(run.delta, run.keys, run.infos, run.carried, after, losses, watch.result.seconds)


def parse_range(store: "Store", text: str) -> tuple[str, str]:
    """``A..B`` (B defaults to HEAD) -> (sha of A, sha of B)."""
    left, sep, right = text.partition("..")
    if not sep or not left:
        raise UsageError(f"squash range {text!r}: write it as A..B (e.g. HEAD~3..HEAD), like git")
    return store.resolve(left), store.resolve(right or "HEAD")


def kept_patch_commits(store: "Store", tip: str, inside: Sequence[str]) -> list[str]:
    """The range's commits live at ``tip`` whose edits are held by non-weight patches (a GRACE
    codebook): a squash keeps those patches as they are and re-solves only the rest. A commit
    holding both weight changes and patches cannot be split, so it is refused."""
    from kedit_vc.errors import StoreError

    kept = []
    for sha in store.live_commits(tip):
        record = store.read_commit(sha)
        if sha not in inside or not record.patch_kinds:
            continue
        delta = record.delta()
        if delta is not None and delta.updates:
            raise StoreError(f"commit {sha[:10]} holds both weight changes and {', '.join(record.patch_kinds)} "
                             "patches; a squash cannot split it (squash a range that starts after it)")
        kept.append(sha)
    return kept


def _plan_calls(store: "Store", sha: str) -> tuple[EditorCall, ...]:
    from .history import source_commit

    source = source_commit(store, sha)
    plan = store.read_commit(source).plan if source else None
    return Plan.from_json(plan).calls if plan else ()


def squash(store: "Store", range_text: str, *, message: str | None = None,
           hparams: Mapping[str, Any] | None = None, wait: bool = False, progress: bool = False,
           eval_batch_size: int = 16, method: str | None = None, allow_loss: bool = False,
           dry_run: bool = False) -> SquashResult:
    """Re-solve the range's live edits as one batch; refused (``SquashRefused``) when an edit
    that held would be weakened, unless ``allow_loss``; ``dry_run`` writes nothing."""
    call_hparams = dict(hparams or {})
    method = (method or METHOD).lower()
    check_call(EditorCall(method, call_hparams), "--hparam")
    with store.lock(wait):
        head = store.head()
        base, tip = parse_range(store, range_text)
        chain = store.chain(head)
        if base not in chain or tip not in chain or chain.index(base) >= chain.index(tip):
            raise UsageError(f"squash range {range_text!r}: A must be an ancestor of B on HEAD's history")
        inside = chain[chain.index(base) + 1: chain.index(tip) + 1]
        kept = kept_patch_commits(store, tip, inside)
        edits = [e for e in live_edits(store, tip) if e.sha in inside and e.sha not in kept]
        if not edits:
            more = " (those held by non-weight patches are kept as they are)" if kept else ""
            raise UsageError(f"squash range {range_text!r} has no live weight edits to re-solve{more}")
        requests = tuple(e.request for e in edits)
        plan = Plan(calls=(EditorCall(method, call_hparams, requests),))
        kept_patches = tuple(p for sha in kept for p in store.read_commit(sha).patches())
        kept_calls = tuple(call for sha in kept for call in _plan_calls(store, sha))
        kept_ids = tuple(r.edit_id for call in kept_calls for r in call.requests)

        evaluator = Evaluator(store, progress=progress, batch_size=eval_batch_size)
        before = evaluator.evaluate(tip, requests)
        evaluator.move_to(base)
        solved = resolve(evaluator, plan, before, store.live_keys(base), progress)
        delta, keys, infos, after, losses = solved.delta, solved.keys, solved.infos, solved.after, solved.losses
        measured = SquashResult(None, base, tip, tuple(inside), tuple(r.edit_id for r in requests), before.report,
                                after, losses, method)
        if losses and not allow_loss and not dry_run:
            raise SquashRefused(measured)
        if dry_run:
            return measured
        replaced = set().union(*(supersedes(store, sha) for sha in inside))
        kept_note = (f"; {len(kept_patches)} {'/'.join(sorted({p.kind for p in kept_patches}))} patch(es) of "
                     f"{len(kept)} commit(s) kept as they are") if kept else ""
        sha = store.write_commit(
            CommitInput(
                message or f"Squash {len(inside)} commits ({len(requests)} edits) into one {method} batch{kept_note}",
                delta=delta, op="squash", squash_range=(base, tip),
                plan=Plan(calls=plan.calls + kept_calls).to_json(),
                metrics={**after.to_json(), "before": before.report.to_json()},
                method=method, hparams=call_hparams, edit_ids=tuple(r.edit_id for r in requests) + kept_ids,
                timings={"edit_s": round(solved.seconds, 4)}, keys=keys, patches=kept_patches,
                extra={"editor_info": infos, "supersedes": sorted(replaced),
                       **({"kept_patches": {"commits": list(kept), "edit_ids": list(kept_ids)}} if kept else {}),
                       **({"weakened": [loss.to_json() for loss in losses]} if losses else {})}),
            expected_head=head)
    return SquashResult(sha, base, tip, tuple(inside), tuple(r.edit_id for r in requests), before.report, after,
                        losses, method)

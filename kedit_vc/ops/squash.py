"""``kvc squash A..B``: the commits after A up to B become one commit whose parent is A.

Its delta comes from one of three strategies (``method``):

- ``auto`` (the default, ``STRATEGY``): re-solve the range's live edits in one batch on A's
  weights with the best re-solve for them (``best_resolver``). Where they are ROME commits of
  one layer and one set of hyperparameters that is ``joint_rome``, ROME's closed form for all
  their keys at once, solved from what the commits stored (``squash_parts``): each part's key
  and right factor, with the values B writes at those keys as targets (``AUTO_TARGETS``), so
  no target is re-optimised and no model runs, and the solve is the exact sum of the parts;
  with ``--hparam`` (target settings) joint ROME re-optimises the targets on A instead.
  Other ranges: ``BATCH_METHOD``.
  If the re-solve would weaken an edit, keep the composed deltas instead; the attempts are
  reported and the commit's message says it fell back.
- ``compose``: the range's live deltas summed exactly (low-rank factors concatenated), so
  A + the squash commit is B's weights and no edit can change. No editor runs.
- a batch method's name (``joint_rome``, ``memit``, ``alphaedit``, ``ultraedit``...): that
  re-solve, gated, with no fallback.

A re-solve that keeps every edit is then compacted (``compact``): its factors stored in
float16 (bfloat16 where float16 would overflow), half the bytes, when that too keeps every
edit (gated like the re-solve); otherwise its float32 factors are kept. Weights are always
formed in float32 (``LowRank.dense``), so the squash commit's revert drops exactly what it added.

Why (``bench/results/squash.json``, ``squash_ideas.json``; single-edit ROME commits on
SmolLM2): a MEMIT re-solve of 10 lost one edit's paraphrases and stored 5x the bytes
(rank-10 factors at five layers); MEMIT at ROME's layer alone lost 5 of 10 (its
(lambda C + K K^T)^-1 solve leaves part of each target unreached); joint ROME with targets
re-optimised on A weakened 1 of 10 and 14 of 42 at 50 (mostly raw-prompt checks), and on
each part's own target 1 of 8 dev edits (a raw prompt). Joint ROME aimed at what the tip
writes at each key is the composition itself (``squash_parts``): it keeps every edit, and
the gain over composing is in the bytes: compacted, half the parts. A composed patch is as big as its
parts while N rank-one factor pairs of a 576x1536 matrix are smaller than the matrix
(N < 419); past that it is stored dense (``smallest_form``).

Edits held by non-weight patches (GRACE codebooks) cannot be folded into weights: their
patches are copied into the squash commit as they are, and its message and manifest
(``extra.kept_patches``) say so.

Commits after B are replayed on top; the old history stays reachable
under ``refs/kvc/squashed/<old head>``. Metrics of the range's edits are measured at B
(before) and on A + the new delta (after), both against the base model.

A squash is gated: every check an edit passed at B (its rewrite prompts' teacher-forced
answer, its paraphrases', and the greedy continuation of its rewrite prompt) must still
pass after, or nothing is written and ``SquashRefused`` lists what would be lost.
``allow_loss`` commits anyway and records the weakened edits in the manifest;
``dry_run`` measures and writes nothing.
"""

from __future__ import annotations

import json
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
from .history import live_edits, source_commit, supersedes
from .plans import check_call

if TYPE_CHECKING:
    import torch

    from kedit_vc.compiler.plan import EditRequest
    from kedit_vc.delta import Delta
    from kedit_vc.store import Store

#: Strategies that are not an editing method: the range's deltas summed exactly, or the
#: best re-solve (``best_resolver``) that falls back to that sum when it would weaken an edit.
COMPOSE = "compose"
AUTO = "auto"
#: What ``kvc squash`` does without ``--method`` (the module docstring says why).
STRATEGY = AUTO
METHOD = STRATEGY
#: The re-solve of a range of ROME edits at one layer (``editors/joint_rome``).
JOINT_METHOD = "joint_rome"
#: What auto's joint ROME of ROME commits aims at (``squash_parts.TARGETS``): the values the
#: range's tip writes at the parts' keys. Their own targets ("parts") weakened 1 of 10 dev
#: edits (raw prompts; ``bench/results/squash_ideas.json``).
AUTO_TARGETS = "tip"
#: How a squash commit's factors are stored: as solved, or compacted (``compact``).
FULL, HALF = "float32", "float16"


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
    method: str = METHOD  # the strategy that made ``after``: compose or a batch method
    attempts: tuple[Mapping[str, Any], ...] = ()  # auto: each try's method, seconds, edits it would weaken
    form: str = FULL  # how the delta's factors are stored: float32, float16 (compacted) or exact (compose)


class WouldWeaken(KvcError):
    """A re-solve (squash, merge, cherry-pick) would weaken edits that held; nothing was
    written (exit 1). ``result`` carries the losses the CLI prints as a table."""

    exit_code = 1

    def __init__(self, result: Any, verb: str, advice: str) -> None:
        self.result = result
        n = len({loss.edit_id for loss in result.losses})
        super().__init__(f"the {verb} would weaken {n} edit(s) that held before (table above); nothing was "
                         f"written. {advice}, or pass --allow-loss to accept it")


class SquashRefused(WouldWeaken):
    """The squash would weaken edits that held; nothing was written (exit 1)."""

    def __init__(self, result: SquashResult) -> None:
        super().__init__(result, "squash", "Try other --hparam settings or --method")


#: Per-edit metrics a squash keeps (the registry's per-edit rows): an edit at 1.0 on one
#: before (every rewrite / paraphrase target token the argmax; every rewrite prompt's greedy
#: continuation holding the new object) must be at 1.0 after.
KEPT = ("reliability", "gen_reliability", "generalization")
#: The same checks on raw prompts (no prefix token: as a user prompts an exported model),
#: where the edit's scores have that form; a MEMIT re-solve can keep every prefixed check
#: and still lose raw ones (bench/results/squash.json: raw reliability 0.60 -> 0.47 at 10).
KEPT_RAW = tuple("raw_" + name for name in KEPT)


def find_losses(requests: Sequence["EditRequest"], before: EvalReport, after: EvalReport) -> list[Loss]:
    """Kept metrics (``KEPT``, ``KEPT_RAW``) an edit held (1.0) in ``before`` and misses in
    ``after``, in request order."""
    old = {row.edit_id: row.metrics for row in before.rows}
    new = {row.edit_id: row.metrics for row in after.rows}
    losses = []
    for request in requests:
        for check in KEPT + KEPT_RAW:
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


def delta_sizes(delta: "Delta") -> dict[str, float]:
    """``delta_bytes``: its tensors' bytes; ``delta_file_bytes``: its file's (safetensors, header included)."""
    return {"delta_bytes": float(delta.summary().stored_bytes), "delta_file_bytes": float(len(delta.to_bytes()))}


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
                      extra={**watch.result.as_metrics(), **delta_sizes(run.delta)})
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
    source = source_commit(store, sha)
    plan = store.read_commit(source).plan if source else None
    return Plan.from_json(plan).calls if plan else ()


def smallest_form(delta: "Delta") -> "Delta":
    """``delta`` with each low-rank update whose factors take more bytes than its dense
    matrix stored dense instead (the same sum, up to float rounding of ``left @ right.T``)."""
    from kedit_vc.delta import Delta
    from kedit_vc.delta.updates import Dense, LowRank, dense_bytes, stored_bytes

    updates = {name: Dense(u.dense()) if isinstance(u, LowRank) and stored_bytes(u) > dense_bytes(u) else u
               for name, u in delta.updates.items()}
    return Delta(updates, dict(delta.meta))


def compose_range(store: "Store", inside: Sequence[str], tip: str) -> tuple["Delta", "dict[int, torch.Tensor]"]:
    """The exact sum of the deltas the range's commits keep live at ``tip`` (a revert inside
    the range cancels its target: both drop out), and their written keys (layer -> [n, d_in]).

    A + this delta is B's weights: low-rank factors are concatenated, so nothing is
    re-estimated and every score at B is reproduced up to float summation order.
    """
    from .commit import _merge_keys

    total: "Delta | None" = None
    keys: "dict[int, torch.Tensor]" = {}
    for sha in store.live_commits(tip):
        if sha not in inside:
            continue
        record = store.read_commit(sha)
        delta = record.delta()
        assert delta is not None
        total = delta if total is None else total.compose(delta)
        _merge_keys(keys, record.keys())
    if total is None:
        raise UsageError("every commit of the squash range is reverted inside it; there is nothing to keep")
    return smallest_form(total), keys


def range_plan(store: "Store", inside: Sequence[str], requests: Sequence["EditRequest"]) -> Plan:
    """The editor calls that made a composed delta: the range's calls in order, each keeping
    only its edits still live (``requests``), so the squash commit says how its delta was made."""
    live = {r.edit_id for r in requests}
    calls = []
    for sha in inside:
        source = source_commit(store, sha)
        stored = store.read_commit(source).plan if source else None
        for call in Plan.from_json(stored).calls if stored else ():
            kept = tuple(r for r in call.requests if r.edit_id in live)
            if kept:
                calls.append(EditorCall(call.method, dict(call.hparams), kept))
                live -= {r.edit_id for r in kept}
    return Plan(calls=tuple(calls))


def best_resolver(calls: Sequence[EditorCall], hparams: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The re-solve ``auto`` uses for edits made by ``calls``, and its hyperparameters.

    ``joint_rome`` when every call is ROME with one set of hyperparameters (so one layer),
    with those hyperparameters and ``hparams`` over them, provided joint ROME takes every
    name in ``hparams``; else ``BATCH_METHOD`` with ``hparams`` (names such as ``layers``
    belong to it).
    """
    from kedit_vc.editors.registry import hparam_names

    settings = {json.dumps(dict(call.hparams), sort_keys=True) for call in calls}
    if (calls and all(call.method == "rome" for call in calls) and len(settings) == 1
            and set(hparams) <= set(hparam_names(JOINT_METHOD))):
        return JOINT_METHOD, {**dict(calls[0].hparams), **dict(hparams)}
    return BATCH_METHOD, dict(hparams)


def compact(delta: "Delta") -> "Delta | None":
    """``delta`` with its low-rank factors stored in float16 (half the bytes), or None if it
    has none in float32. Each rank-one column pair is first balanced (``left`` and ``right``
    scaled to equal norms: the product is unchanged) so neither factor under- or overflows;
    a pair that float16 still cannot hold goes to bfloat16 (float32's range, fewer digits).
    Whether every edit survives the rounding is for the squash's gate to say.
    """
    import torch

    from kedit_vc.delta import Delta
    from kedit_vc.delta.updates import LowRank

    updates: dict[str, Any] = {}
    changed = False
    for name, update in delta.updates.items():
        if not isinstance(update, LowRank) or update.dtype != torch.float32:
            updates[name] = update
            continue
        left, right = update.left.double(), update.right.double()
        scale = (right.norm(dim=0) / left.norm(dim=0).clamp_min(1e-300)).sqrt().clamp_min(1e-150)   # [r]
        left, right = left * scale, right / scale
        half = torch.float16
        if not (bool(torch.isfinite(left.to(half)).all()) and bool(torch.isfinite(right.to(half)).all())):
            half = torch.bfloat16
        updates[name] = LowRank(left.to(half).contiguous(), right.to(half).contiguous())
        changed = True
    return Delta(updates, dict(delta.meta)) if changed else None


def _solve_from_parts(store: "Store", inside: Sequence[str], tip: str
                      ) -> "tuple[Delta, dict[int, torch.Tensor], dict[str, Any], float] | None":
    """Joint ROME on the range's own keys, aimed at ``AUTO_TARGETS`` (``squash_parts``): its delta, the
    parts' keys (layer -> [n, d_in]), an info row and seconds; None where the range is not
    single-layer ROME commits with independent keys."""
    import time

    from .commit import _merge_keys
    from .squash_parts import parts_delta, range_parts

    started = time.perf_counter()
    parts = range_parts(store, inside, tip)
    if parts is None:
        return None
    try:
        delta = parts_delta(parts, AUTO_TARGETS)
    except ValueError:  # two parts wrote one key: no joint solve
        return None
    keys: "dict[int, torch.Tensor]" = {}
    for sha in store.live_commits(tip):
        if sha in inside:
            _merge_keys(keys, store.read_commit(sha).keys())
    info = {"method": JOINT_METHOD, "targets": AUTO_TARGETS, "commits": len(parts)}
    return delta, keys, info, time.perf_counter() - started


@dataclass(frozen=True)
class _Attempt:
    """One way of making the squash commit's delta, measured."""

    method: str
    hparams: dict[str, Any]
    delta: "Delta"
    keys: "dict[int, torch.Tensor]"
    infos: list[dict[str, Any]]
    seconds: float
    after: EvalReport
    losses: tuple[Loss, ...]
    form: str = FULL  # how its factors are stored: float32, or float16 once compacted
    targets: str | None = None  # joint ROME solved from the parts' keys: what it aimed at (squash_parts)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "form": self.form, "seconds": round(self.seconds, 4),
                "delta_bytes": int(self.delta.summary().stored_bytes),
                "edits_weakened": len({loss.edit_id for loss in self.losses}),
                "weakened": [loss.to_json() for loss in self.losses],
                **({"targets": self.targets} if self.targets else {})}


def _choose(method: str, attempt: Any, solver: str, solver_hparams: dict[str, Any]) -> list[_Attempt]:
    """The attempts a squash makes, in order; the last without losses is the one committed
    (the last of all when every one loses). A re-solve that keeps everything is compacted
    (kept only if that keeps everything too); ``auto``'s re-solve that loses falls back to compose."""
    if method == COMPOSE:
        return [attempt(COMPOSE, {})]
    first = attempt(solver, solver_hparams)
    if first.losses:
        return [first, attempt(COMPOSE, {})] if method == AUTO else [first]
    small = compact(first.delta)
    return [first] if small is None else [first, attempt(solver, solver_hparams, compacted=(first, small))]


def _message(inside: Sequence[str], requests: Sequence[Any], chosen: _Attempt, tries: Sequence[_Attempt],
             kept_note: str) -> str:
    """The squash commit's default message: what made its delta, and why when auto fell back."""
    if chosen.method == COMPOSE:
        verb = "composed"
        lost = [t for t in tries if t.method != COMPOSE and t.losses]
        if lost:
            n = len({loss.edit_id for loss in lost[0].losses})
            verb += f" (the {lost[0].method} re-solve would weaken {n} edit(s), so the deltas were kept as they are)"
    else:
        solved = f" on the parts' keys ({chosen.targets} targets)" if chosen.targets else ""
        verb = f"one {chosen.method} batch{solved}" + (f" ({chosen.form} factors)" if chosen.form != FULL else "")
    return f"Squash {len(inside)} commits ({len(requests)} edits) into {verb}{kept_note}"


def squash(store: "Store", range_text: str, *, message: str | None = None,
           hparams: Mapping[str, Any] | None = None, wait: bool = False, progress: bool = False,
           eval_batch_size: int = 16, method: str | None = None, allow_loss: bool = False,
           dry_run: bool = False) -> SquashResult:
    """Squash the range with ``method`` (default ``STRATEGY``: see the module docstring); refused
    (``SquashRefused``) when an edit that held would be weakened, unless ``allow_loss``;
    ``dry_run`` writes nothing."""
    call_hparams = dict(hparams or {})
    # --hparam without --method tunes a re-solve: it means the batch method.
    method = (method or (BATCH_METHOD if call_hparams else STRATEGY)).lower()
    if method == COMPOSE:
        if call_hparams:
            raise UsageError("--hparam sets a re-solve's method; `--method compose` runs no editor "
                             f"(pass --method {BATCH_METHOD} or auto to re-solve)")
    elif method != AUTO:
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
        kept_patches = tuple(p for sha in kept for p in store.read_commit(sha).patches())
        kept_calls = tuple(call for sha in kept for call in _plan_calls(store, sha))
        kept_ids = tuple(r.edit_id for call in kept_calls for r in call.requests)
        if method == AUTO:
            solver, solver_hparams = best_resolver(range_plan(store, inside, requests).calls, call_hparams)
            check_call(EditorCall(solver, solver_hparams), "--hparam")
        else:
            solver, solver_hparams = method, call_hparams
        # auto's joint ROME needs no target optimisation: the parts' own keys, aimed at what the
        # tip writes there (squash_parts); --hparam (targets' settings) asks for the optimising one.
        from_parts = (_solve_from_parts(store, inside, tip)
                      if method == AUTO and solver == JOINT_METHOD and not call_hparams and not kept else None)

        evaluator = Evaluator(store, progress=progress, batch_size=eval_batch_size)
        before = evaluator.evaluate(tip, requests)

        def measured_after(delta: "Delta", seconds: float) -> EvalReport:
            return summarize(evaluator.score_now(requests), before.pre,
                             extra={"seconds": seconds, **delta_sizes(delta)})

        def attempt(how: str, how_hparams: dict[str, Any],
                    compacted: "tuple[_Attempt, Delta] | None" = None) -> _Attempt:
            evaluator.move_to(base)
            if compacted is not None:  # the same solve, stored smaller: judged afresh
                solved, small = compacted
                evaluator.weights.apply(small)
                evaluator.mark_changed()
                after = measured_after(small, solved.seconds)
                return _Attempt(how, how_hparams, small, solved.keys, solved.infos, solved.seconds, after,
                                tuple(find_losses(requests, before.report, after)), HALF, solved.targets)
            if how == JOINT_METHOD and from_parts is not None:
                solved_delta, solved_keys, solved_info, solved_seconds = from_parts
                evaluator.weights.apply(solved_delta)
                evaluator.mark_changed()
                after = measured_after(solved_delta, solved_seconds)
                return _Attempt(how, how_hparams, solved_delta, solved_keys, [solved_info], solved_seconds, after,
                                tuple(find_losses(requests, before.report, after)), FULL, AUTO_TARGETS)
            if how != COMPOSE:
                plan = Plan(calls=(EditorCall(how, how_hparams, requests),))
                run = resolve(evaluator, plan, before, store.live_keys(base), progress)
                return _Attempt(how, how_hparams, run.delta, run.keys, run.infos, run.seconds, run.after,
                                run.losses)
            with measure() as watch:
                delta, keys = compose_range(store, inside, tip)
                infos: list[dict[str, Any]] = [{"method": COMPOSE, "commits": len(inside)}]
                evaluator.weights.apply(delta)
                evaluator.mark_changed()
            assert watch.result is not None
            after = summarize(evaluator.score_now(requests), before.pre,
                              extra={**watch.result.as_metrics(), **delta_sizes(delta)})
            return _Attempt(how, {}, delta, keys, infos, watch.result.seconds, after,
                            tuple(find_losses(requests, before.report, after)), "exact")

        tries = _choose(method, attempt, solver, solver_hparams)
        chosen = next((t for t in reversed(tries) if not t.losses), tries[-1])
        attempts = tuple(t.to_json() for t in tries) if len(tries) > 1 else ()
        measured = SquashResult(None, base, tip, tuple(inside), tuple(r.edit_id for r in requests), before.report,
                                chosen.after, chosen.losses, chosen.method, attempts, chosen.form)
        if chosen.losses and not allow_loss and not dry_run:
            raise SquashRefused(measured)
        if dry_run:
            return measured
        replaced = set().union(*(supersedes(store, sha) for sha in inside))
        made = (range_plan(store, inside, requests) if chosen.method == COMPOSE or chosen.targets else
                Plan(calls=(EditorCall(chosen.method, chosen.hparams, requests),)))
        plan_json = Plan(calls=made.calls + kept_calls).to_json()
        kept_note = (f"; {len(kept_patches)} {'/'.join(sorted({p.kind for p in kept_patches}))} patch(es) of "
                     f"{len(kept)} commit(s) kept as they are") if kept else ""
        sha = store.write_commit(
            CommitInput(
                message or _message(inside, requests, chosen, tries, kept_note),
                delta=chosen.delta, op="squash", squash_range=(base, tip), plan=plan_json,
                metrics={**chosen.after.to_json(), "before": before.report.to_json()},
                method=chosen.method, hparams=chosen.hparams,
                edit_ids=tuple(r.edit_id for r in requests) + kept_ids,
                timings={"edit_s": round(chosen.seconds, 4)}, keys=chosen.keys, patches=kept_patches,
                extra={"editor_info": chosen.infos, "supersedes": sorted(replaced), "stored_as": chosen.form,
                       **({"targets": chosen.targets} if chosen.targets else {}),
                       **({"kept_patches": {"commits": list(kept), "edit_ids": list(kept_ids)}} if kept else {}),
                       **({"attempts": list(attempts)} if attempts else {}),
                       **({"weakened": [loss.to_json() for loss in chosen.losses]} if chosen.losses else {})}),
            expected_head=head)
    return SquashResult(sha, base, tip, tuple(inside), tuple(r.edit_id for r in requests), before.report,
                        chosen.after, chosen.losses, chosen.method, attempts, chosen.form)

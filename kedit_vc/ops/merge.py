"""``kvc merge BRANCH`` and ``kvc cherry-pick REV``: edits of another line of history,
re-solved on this one.

Merge. With ``base`` the merge base of HEAD (ours) and BRANCH (theirs):

* theirs in ours' history: nothing to do; ours in theirs': fast-forward (the branch ref
  moves, nothing is solved);
* otherwise each side's *added* edits are its live edits that were not live at the base.
  One edit added on each side for the same (subject, relation) with different objects is
  a **conflict**: nothing is solved or written but ``.kvc/MERGE_STATE.json`` and
  ``.kvc/MERGE_CONFLICTS.kedit`` (a spec holding both sides' lines; the user deletes one
  of each pair and runs ``kvc merge --continue``; ``--abort`` deletes both files, which
  leaves the store byte for byte as it was);
* without (or after resolving) conflicts, the union of the added edits (and of edits live
  on both sides whose commits are not in the start, as after an earlier merge of the same
  branch) is re-solved in one batch (``squash.resolve``: the method both sides used where they agree, else
  ``BATCH_METHOD``, or ``--method``) on the *start* weights: the base's, less any commit
  live at the base that either side no longer has live. Each edit is scored before on its
  own side's tip and after on the merged weights; an edit check that held and fails is a
  loss, and the merge is refused (``MergeRefused``) unless ``allow_loss``.

Strategies (``strategy``, ``STRATEGIES``): ``resolve`` is the re-solve above; ``compose``
runs no editor: the merged weights are ours + theirs - base (the merge base plus both
sides' live deltas since it, summed exactly, low-rank factors concatenated), gated the
same way; ``auto`` (the default) re-solves and, when that would weaken an edit, composes
instead, keeping whichever weakens fewer edits (the re-solve on a tie). An edit commit of
theirs whose edits ours committed too is summed once (ours'); a commit holding both such
edits and others is summed whole, and the gate judges the result. The chosen
strategy, why, and each attempt's seconds and losses are recorded in the merge commit
(``extra.merge``). Why auto: on SmolLM2 a ROME re-solve of two branches' edits from the
base can miss a raw-prompt check that each edit's own commit met, where each side's own
deltas, summed, keep what they did on their side unless the two sides' edits interfere.
Compose cannot drop one side of a conflict (both sides' deltas are in the sum), so a merge
finished with ``--continue`` re-solves.

The merge commit has two parents (HEAD, then BRANCH's tip). Its delta takes ours'
weights to the merge's (start + the re-solve): the inverses of the commits live at ours
but not in the start, composed with the re-solved delta, so the store's rule "weights =
base + the live deltas on the first-parent chain" holds unchanged, and reverting the merge
returns exactly to ours (``git revert -m 1``). Its plan lists the union; ``supersedes``
lists every other edit live at ours that the merge does not keep, so the live edits after
it are the kept start edits plus the union, whichever side merges which.

Cherry-pick. The picked commit's edits (those not already live at HEAD) are re-solved on
HEAD's weights with the method that commit used (or ``--method``), gated against their
scores at the picked commit, and recorded as an ordinary edit commit; a live edit of the
same fact with another object is a conflict, handled as above.

Order of work: every check that needs no model (conflicts included) runs first; objects
are written before the branch ref moves; the state files are removed only after. Ctrl-C
or a crash anywhere leaves HEAD where it was (a stale state file is cleared by --abort).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, NoReturn, Sequence

from kedit_vc.compiler.plan import EditorCall, EditRequest, Plan
from kedit_vc.editors.defaults import BATCH_METHOD
from kedit_vc.errors import KvcError, StoreError, UsageError
from kedit_vc.eval.report import EvalReport, summarize
from kedit_vc.eval.scores import ProbeScores
from kedit_vc.fsio import atomic_write_text
from kedit_vc.store import CommitInput, refs

from .branches import is_ancestor
from .evaluate import Evaluation, Evaluator
from .history import LiveEdit, fact_key, live_edits, source_commit
from .plans import check_call
from .squash import COMPOSE, Loss, Resolved, WouldWeaken, find_losses, resolve, smallest_form

if TYPE_CHECKING:
    from kedit_vc.delta import Delta
    from kedit_vc.store import Store

STATE_FILE = "MERGE_STATE.json"
CONFLICTS_FILE = "MERGE_CONFLICTS.kedit"
STATE_VERSION = 1
#: Merge strategies: re-solve the union from the base, sum both sides' deltas, or the
#: first, falling back to the second when it would weaken an edit (the default).
RESOLVE = "resolve"
AUTO = "auto"
STRATEGIES = (AUTO, RESOLVE, COMPOSE)
STRATEGY = AUTO


# -- what the result and the refusals say -----------------------------------------------


@dataclass(frozen=True)
class Side:
    """One side's edit of a conflicting fact: the request and the commit that carries it."""

    edit: LiveEdit
    label: str          # "ours (main)" / "theirs (feature)"
    author: str
    title: str
    metrics: Mapping[str, float]  # the edit's row in its commit's recorded metrics

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "commit": self.edit.sha, "author": self.author, "title": self.title,
                "metrics": dict(self.metrics), "request": self.edit.request.to_json(),
                "spec_line": spec_line(self.edit.request)}


@dataclass(frozen=True)
class Conflict:
    """Both sides rewrote one fact (subject, prompt template) to different objects."""

    ours: Side
    theirs: Side

    @property
    def key(self) -> tuple[str, str]:
        return fact_key(self.ours.edit.request)

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.key[0], "prompt": self.key[1], "ours": self.ours.to_json(),
                "theirs": self.theirs.to_json()}


@dataclass(frozen=True)
class MergeResult:
    """What a merge or cherry-pick did. ``sha`` is the new commit (None: dry run, refused,
    nothing to do, or a fast-forward, whose new HEAD is ``theirs``)."""

    kind: str                           # "merge" | "cherry-pick"
    sha: str | None
    ours: str
    theirs: str
    base: str | None
    outcome: str                        # merged | fast-forward | up-to-date | dry-run | refused
    requests: tuple[EditRequest, ...] = ()
    before: EvalReport | None = None
    after: EvalReport | None = None
    losses: tuple[Loss, ...] = ()
    method: str = ""
    superseded: tuple[str, ...] = ()
    skipped: tuple[str, ...] = field(default=())  # cherry-pick: edit ids already live at HEAD
    strategy: str = RESOLVE  # merge: resolve | compose, the one that made ``after``
    reason: str = ""         # merge: why that strategy (auto's choice explained)
    attempts: tuple[Mapping[str, Any], ...] = ()  # merge: each strategy tried, its seconds and losses

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "committed": self.sha, "outcome": self.outcome, "ours": self.ours,
                "theirs": self.theirs, "base": self.base, "method": self.method, "strategy": self.strategy,
                "reason": self.reason, "attempts": [dict(a) for a in self.attempts],
                "edit_ids": [r.edit_id for r in self.requests], "superseded": list(self.superseded),
                "skipped": list(self.skipped), "losses": [loss.to_json() for loss in self.losses],
                "before": self.before.to_json() if self.before else None,
                "after": self.after.to_json() if self.after else None}


class MergeConflict(KvcError):
    """The merge stopped at conflicting edits; the state to finish it is written (exit 1)."""

    exit_code = 1

    def __init__(self, kind: str, conflicts: Sequence[Conflict], spec_path: Path | None) -> None:
        self.kind = kind
        self.conflicts = tuple(conflicts)
        self.spec_path = spec_path
        where = (f"keep one edit line of each pair in {spec_path}, then run `kvc {kind} --continue` "
                 f"(or `kvc {kind} --abort`)") if spec_path else "nothing was written (dry run)"
        super().__init__(f"{len(self.conflicts)} conflicting edit(s) (both sides above); {where}")


class MergeRefused(WouldWeaken):
    """The re-solve would weaken edits that held on their own side; nothing was written."""

    def __init__(self, result: MergeResult) -> None:
        super().__init__(result, result.kind, "Try --method or --hparam")


# -- the state of a stopped merge -----------------------------------------------------------


def state_path(store: "Store") -> Path:
    return store.paths.kvc / STATE_FILE


def conflicts_path(store: "Store") -> Path:
    return store.paths.kvc / CONFLICTS_FILE


def pending(store: "Store") -> dict[str, Any] | None:
    """The state of a merge or cherry-pick stopped at conflicts, or None."""
    path = state_path(store)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise StoreError(f"{path} is unreadable ({error}); `kvc merge --abort` removes it") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise StoreError(f"{path} is not a kvc merge state; `kvc merge --abort` removes it")
    return data


def _refuse_if_pending(store: "Store") -> None:
    state = pending(store)
    if state is not None:
        kind = state["kind"]
        raise StoreError(f"a {kind} is already in progress (see {conflicts_path(store)}); finish it with "
                         f"`kvc {kind} --continue` or abandon it with `kvc {kind} --abort`")


def spec_template(prompt: str) -> str:
    """A request's prompt (``{}`` for the subject, other braces doubled) as spec text writes it."""
    return "{subject}".join(p.replace("{{", "{").replace("}}", "}") for p in prompt.split("{}"))


def spec_line(request: EditRequest) -> str:
    """The edit as one spec line (inline prompt, old and new objects)."""
    from kedit_vc.lang.format import format_items
    from kedit_vc.lang.ir import Edit

    edit = Edit(request.subject, None, spec_template(request.prompt), request.target_true, request.target_new)
    return format_items([edit]).strip()


def _conflicts_text(kind: str, conflicts: Sequence[Conflict]) -> str:
    lines = [f"# kvc {kind}: {len(conflicts)} conflicting edit(s). For each conflict keep ONE of its two edit",
             f"# lines (delete the other), then run `kvc {kind} --continue`; `kvc {kind} --abort` gives up.",
             ""]
    for number, conflict in enumerate(conflicts, 1):
        subject, prompt = conflict.key
        lines.append(f"# conflict {number}: {subject!r} / {spec_template(prompt)!r}")
        for side in (conflict.ours, conflict.theirs):
            scores = ", ".join(f"{k} {v:.2f}" for k, v in sorted(side.metrics.items()) if k in _SHOWN)
            lines.append(f"# {side.label}: commit {side.edit.sha[:10]} by {side.author}: {side.title}"
                         + (f" [{scores}]" if scores else ""))
            lines.append(spec_line(side.edit.request))
        lines.append("")
    return "\n".join(lines)


_SHOWN = ("reliability", "generalization", "locality", "gen_reliability")


def _write_state(store: "Store", state: Mapping[str, Any], conflicts: Sequence[Conflict]) -> Path:
    """The conflicts spec first, then the state file (whose presence means 'in progress')."""
    spec = conflicts_path(store)
    atomic_write_text(spec, _conflicts_text(state["kind"], conflicts), store.paths.tmp)
    data = {**state, "version": STATE_VERSION, "conflicts": [c.to_json() for c in conflicts]}
    atomic_write_text(state_path(store), json.dumps(data, indent=2, sort_keys=True) + "\n", store.paths.tmp)
    return spec


def _clear_state(store: "Store") -> None:
    for path in (state_path(store), conflicts_path(store)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def abort(store: "Store") -> dict[str, Any]:
    """Abandon a stopped merge or cherry-pick: remove its state (nothing else was changed)."""
    with store.lock():
        try:
            state = pending(store)
        except StoreError:  # unreadable: removing it is what abort is for
            state = {}
        if state is None and not conflicts_path(store).exists():
            raise UsageError("no merge or cherry-pick is in progress (nothing to abort)")
        _clear_state(store)
        return state or {}


def _picks(store: "Store", state: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """(subject, prompt) -> the object the user kept in the conflicts spec, checked."""
    from kedit_vc.compiler.lower import lower
    from kedit_vc.lang import load

    path = conflicts_path(store)
    if not path.exists():
        raise StoreError(f"{path} is missing; `kvc {state['kind']} --abort` and start again")
    kept: dict[tuple[str, str], list[str]] = {}
    for request in lower(load(path)).requests:  # a SpecError names file:line:col
        kept.setdefault(fact_key(request), []).append(request.target_new)
    picks = {}
    for number, conflict in enumerate(state["conflicts"], 1):
        key = (conflict["subject"], conflict["prompt"])
        options = (conflict["ours"]["request"]["target_new"], conflict["theirs"]["request"]["target_new"])
        found = kept.get(key, [])
        if len(found) != 1 or found[0] not in options:
            what = "none" if not found else ", ".join(repr(f) for f in found)
            raise UsageError(f"{path}: conflict {number} ({key[0]!r}) keeps {what}; keep exactly one of its two "
                             f"edit lines ({options[0]!r} or {options[1]!r})")
        picks[key] = found[0]
    return picks


# -- shared steps --------------------------------------------------------------------------


def _side(store: "Store", edit: LiveEdit, label: str) -> Side:
    record = store.read_commit(edit.sha)
    rows = {row["edit_id"]: row.get("metrics", {}) for row in record.metrics.get("rows", ()) if "edit_id" in row}
    title = record.message.splitlines()[0] if record.message else ""
    return Side(edit, label, record.author, title, {k: float(v) for k, v in rows.get(edit.request.edit_id, {}).items()})


def _find_conflicts(ours: Sequence[LiveEdit], theirs: Sequence[LiveEdit]) -> list[tuple[LiveEdit, LiveEdit]]:
    """(ours, theirs) pairs that rewrite one fact to different objects, in theirs' order."""
    by_key = {e.key: e for e in ours}
    return [(by_key[e.key], e) for e in theirs
            if e.key in by_key and by_key[e.key].request.target_new != e.request.target_new]


def _call_of(store: "Store", edit: LiveEdit) -> tuple[str, str]:
    """(method, hparams as sorted JSON) of the plan call that made ``edit``."""
    source = source_commit(store, edit.sha) or edit.sha
    plan = store.read_commit(source).plan
    for call in Plan.from_json(plan).calls if plan else ():
        if any(r.edit_id == edit.request.edit_id for r in call.requests):
            return call.method, json.dumps(dict(call.hparams), sort_keys=True)
    return BATCH_METHOD, "{}"


def _plan_for(store: "Store", edits: Sequence[LiveEdit], method: str | None,
              hparams: Mapping[str, Any] | None) -> Plan:
    """One call over ``edits``: ``method`` if named, else the method (and hyperparameters)
    every edit was made with when they agree, else ``BATCH_METHOD``; ``hparams`` on top."""
    requests = tuple(e.request for e in edits)
    if method is None:
        used = {_call_of(store, e) for e in edits}
        if len(used) == 1:
            name, settings = used.pop()
            call = EditorCall(name, {**json.loads(settings), **dict(hparams or {})}, requests)
            check_call(call, "--hparam")
            return Plan(calls=(call,))
    call = EditorCall((method or BATCH_METHOD).lower(), dict(hparams or {}), requests)
    check_call(call, "--hparam")
    return Plan(calls=(call,))


def _joined(parts: Sequence[Evaluation]) -> Evaluation:
    """Several evaluations (each side's edits on its own tip) read as one ``before``."""
    parts = [p for p in parts if p.requests]
    forms = parts[0].post.forms if parts else "prefixed"
    post = ProbeScores(tuple(e for p in parts for e in p.post.edits), forms)
    pre = ProbeScores(tuple(e for p in parts for e in p.pre.edits), forms)
    requests = tuple(r for p in parts for r in p.requests)
    return Evaluation("", requests, post, pre, summarize(post, pre))


def _delta_from(store: "Store", dropped: Sequence[str], solved: "Delta") -> "Delta":
    """The inverses of ``dropped`` (commits live at HEAD but not in the start), then ``solved``:
    HEAD's weights + this = the start weights + ``solved``."""
    total: "Delta | None" = None
    for sha in dropped:
        delta = store.read_commit(sha).delta()
        assert delta is not None
        total = delta.inverse() if total is None else total.compose(delta.inverse())
    return solved if total is None else total.compose(solved)


def _carried_from(store: "Store", dropped: Sequence[str], solved: Resolved) -> "dict[str, Any]":
    from kedit_vc.store.carried import negated, summed

    parts = [negated(store.read_commit(sha).carried()) for sha in dropped]
    return summed([solved.carried, *parts]) if any(parts) or solved.carried else {}


def _union_spec(requests: Sequence[EditRequest], title: str) -> str:
    return f"# {title}\n" + "\n".join(spec_line(r) for r in requests) + "\n"


@dataclass(frozen=True)
class _Options:
    method: str | None
    hparams: Mapping[str, Any]
    message: str | None
    allow_loss: bool
    dry_run: bool
    progress: bool
    eval_batch_size: int
    strategy: str = STRATEGY


# -- merge -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MergePlan:
    ours: str
    theirs: str
    base: str
    added_ours: tuple[LiveEdit, ...]
    added_theirs: tuple[LiveEdit, ...]
    kept: tuple[LiveEdit, ...]          # live at the base and on both sides, their commit in the start
    again: tuple[LiveEdit, ...]         # live at the base and on both sides, their commit not (re-solve them)
    start: tuple[str, ...]              # commits live at the base and live on both sides
    dropped_at_base: tuple[str, ...]    # commits live at the base that a side no longer has
    live_ours: tuple[str, ...]
    theirs_added: tuple[str, ...] = ()  # commits live at theirs, not at the base (compose adds them)
    theirs_dropped: tuple[str, ...] = ()  # live at the base and ours, not theirs (compose subtracts them)


def _merge_plan(store: "Store", ours: str, theirs: str, base: str) -> _MergePlan:
    at_base, at_ours, at_theirs = (live_edits(store, sha) for sha in (base, ours, theirs))
    ids = [{e.request.edit_id for e in edits} for edits in (at_base, at_ours, at_theirs)]
    added_ours = tuple(e for e in at_ours if e.request.edit_id not in ids[0])
    added_theirs = tuple(e for e in at_theirs if e.request.edit_id not in ids[0])
    both = [e for e in at_base if e.request.edit_id in ids[1] and e.request.edit_id in ids[2]]
    live_ours, live_theirs = store.live_commits(ours), set(store.live_commits(theirs))
    start = tuple(c for c in store.live_commits(base) if c in set(live_ours) and c in live_theirs)
    dropped = tuple(c for c in store.live_commits(base) if c not in start)
    # After an earlier merge the base can be a commit of the other side whose deltas ours
    # re-solved away: its edits are live on both sides but not in the start weights.
    kept = tuple(e for e in both if e.sha in start)
    again = tuple(e for e in both if e.sha not in start)
    _refuse_patch_edits(store, [e.sha for e in (*added_ours, *added_theirs, *again)], "merge")
    live_base = store.live_commits(base)
    # An edit commit of theirs whose edits ours added too (the same facts, committed on both
    # sides) is in ours' weights already: compose adds it once, from ours.
    theirs_added = tuple(c for c in store.live_commits(theirs) if c not in set(live_base)
                         and not _duplicate(store, c, ids[1]))
    theirs_dropped = tuple(c for c in live_base if c in set(live_ours) and c not in live_theirs)
    return _MergePlan(ours, theirs, base, added_ours, added_theirs, kept, again, start, dropped, tuple(live_ours),
                      theirs_added, theirs_dropped)


def _duplicate(store: "Store", sha: str, live_ids: set[str]) -> bool:
    record = store.read_commit(sha)
    return record.op == "edit" and bool(record.edit_ids) and set(record.edit_ids) <= live_ids


def _refuse_patch_edits(store: "Store", shas: Sequence[str], verb: str) -> None:
    """Merge and cherry-pick re-solve weight edits; an edit held by a non-weight patch (a
    GRACE codebook) would be re-solved without its patch, so it is refused, not lost."""
    for sha in dict.fromkeys(shas):
        kinds = store.read_commit(sha).patch_kinds
        if kinds:
            raise UsageError(f"{verb}: commit {sha[:10]} holds its edits in {', '.join(kinds)} patches, which a "
                             f"{verb} cannot re-solve yet; commit those facts again on this branch instead")


def _union(plan: _MergePlan, picks: Mapping[tuple[str, str], str]) -> tuple[list[LiveEdit], list[LiveEdit]]:
    """(edits to re-solve scored on ours, those scored on theirs): the base's edits whose
    commits are not in the start, then each side's added edits; conflicts settled by
    ``picks``, an edit both sides added counted once (as ours)."""
    ours = list(plan.again) + [e for e in plan.added_ours
                               if picks.get(e.key, e.request.target_new) == e.request.target_new]
    have = {e.request.edit_id for e in ours}
    theirs = [e for e in plan.added_theirs if e.request.edit_id not in have
              and picks.get(e.key, e.request.target_new) == e.request.target_new]
    return ours, theirs



def _stop_at_conflicts(store: "Store", kind: str, pairs: Sequence[tuple[Any, Any]],
                       shas: tuple[str, str, str | None], name: str, options: Any, dry_run: bool) -> NoReturn:
    """Show both sides of each conflicting pair and stop; outside a dry run, write the state
    ``--continue``/``--abort`` read (``shas``: ours, theirs, merge base or None)."""
    current = refs.current_branch(store) or "HEAD"
    conflicts = [Conflict(_side(store, o, f"ours ({current})"), _side(store, t, f"theirs ({name})"))
                 for o, t in pairs]
    spec = None
    if not dry_run:
        ours, theirs, base = shas
        spec = _write_state(store, {"kind": kind, "ours": ours, "theirs": theirs, "base": base,
                                    "name": name, "options": _options_json(options)}, conflicts)
    raise MergeConflict(kind, conflicts, spec)

def merge(store: "Store", branch: str, *, method: str | None = None, hparams: Mapping[str, Any] | None = None,
          message: str | None = None, allow_loss: bool = False, dry_run: bool = False, wait: bool = False,
          progress: bool = False, eval_batch_size: int = 16, strategy: str = STRATEGY) -> MergeResult:
    """Merge ``branch`` (a branch, tag or revision) into HEAD (see the module docstring).

    Raises ``MergeConflict`` (state written unless ``dry_run``), ``MergeRefused`` (nothing
    written), or returns the result (a new two-parent commit, a fast-forward, or nothing).
    """
    strategy = check_strategy(strategy, method, hparams)
    options = _Options(method, dict(hparams or {}), message, allow_loss, dry_run, progress, eval_batch_size,
                       strategy)
    with store.lock(wait):
        _refuse_if_pending(store)
        ours, theirs = store.head(), store.resolve(branch)
        if is_ancestor(store, theirs, ours):
            return MergeResult("merge", None, ours, theirs, theirs, "up-to-date")
        base = store.repo.git.merge_base(ours, theirs).split()[0] if _has_base(store, ours, theirs) else None
        if base is None:
            raise StoreError(f"HEAD and {branch} share no history; they cannot be merged")
        _refuse_criss_cross(store, ours, theirs, branch)
        if is_ancestor(store, ours, theirs):
            if not dry_run:
                refs.fast_forward(store, theirs, ours)
            return MergeResult("merge", None, ours, theirs, base, "dry-run" if dry_run else "fast-forward")
        plan = _merge_plan(store, ours, theirs, base)
        pairs = _find_conflicts(plan.added_ours, plan.added_theirs)
        if pairs:
            _stop_at_conflicts(store, "merge", pairs, (ours, theirs, base), branch, options, dry_run)
        return _finish_merge(store, plan, branch, {}, options)


def _refuse_criss_cross(store: "Store", ours: str, theirs: str, branch: str) -> None:
    """Two lines that merged each other both ways have several merge bases (criss-cross):
    the start weights would depend on which one is taken, so such a merge is refused."""
    bases = store.repo.git.merge_base("--all", ours, theirs).split()
    if len(bases) > 1:
        named = ", ".join(sha[:10] for sha in bases)
        raise StoreError(f"HEAD and {branch} have {len(bases)} merge bases ({named}): each side merged the other "
                         f"(a criss-cross), so no one ancestor to merge from exists. Bring {branch}'s edits over "
                         f"with `kvc cherry-pick` of its commits after {bases[0][:10]}, or branch anew from one "
                         "side's tip and merge into that")


def _has_base(store: "Store", a: str, b: str) -> bool:
    status, _, _ = store.repo.git.merge_base(a, b, with_extended_output=True, with_exceptions=False)
    return status == 0


def check_strategy(strategy: str, method: str | None, hparams: Mapping[str, Any] | None) -> str:
    """``strategy`` lower-cased, checked against ``STRATEGIES`` and against re-solve options."""
    name = strategy.lower()
    if name not in STRATEGIES:
        raise UsageError(f"--strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if name == COMPOSE and (method or hparams):
        raise UsageError("--method and --hparam set the re-solve; `--strategy compose` runs no editor "
                         "(pass --strategy auto or resolve with them)")
    return name


def _options_json(options: _Options) -> dict[str, Any]:
    return {"method": options.method, "hparams": dict(options.hparams), "message": options.message,
            "strategy": options.strategy}


@dataclass(frozen=True)
class _Made:
    """One strategy's merged weights, measured: ``delta`` takes ours' weights to them."""

    strategy: str
    method: str
    plan: Plan
    delta: "Delta"
    keys: "dict[int, Any]"
    carried: "dict[str, Any]"
    infos: list[dict[str, Any]]
    after: EvalReport
    losses: tuple[Loss, ...]
    edit_s: float
    seconds: float   # editing (or summing) and scoring

    def to_json(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "method": self.method, "seconds": round(self.seconds, 4),
                "edits_weakened": len({loss.edit_id for loss in self.losses}),
                "checks_lost": [loss.to_json() for loss in self.losses]}


def _resolved(store: "Store", plan: _MergePlan, evaluator: Evaluator, call_plan: Plan, before: Evaluation,
              progress: bool) -> _Made:
    """The ``resolve`` strategy: the union re-solved in one batch on the start weights."""
    import time

    began = time.perf_counter()
    evaluator.move_to(plan.base)
    for sha in plan.dropped_at_base:  # a side reverted it since the base: the merge does too
        delta = store.read_commit(sha).delta()
        assert delta is not None
        evaluator.weights.apply(delta.inverse())
        evaluator.mark_changed()
    solved = resolve(evaluator, call_plan, before, store.live_keys(plan.base), progress,
                     _start_carried(store, plan.base, plan.dropped_at_base))
    dropped = tuple(c for c in plan.live_ours if c not in plan.start)
    return _Made(RESOLVE, call_plan.calls[0].method, call_plan, _delta_from(store, dropped, solved.delta),
                 solved.keys, _carried_from(store, dropped, solved), solved.infos, solved.after, solved.losses,
                 solved.seconds, time.perf_counter() - began)


def composed_delta(store: "Store", plan: _MergePlan) -> "tuple[Delta, dict[int, Any], dict[str, Any]]":
    """Theirs' weights less the base's, as one delta on ours: theirs' live deltas since the
    base, less those of base commits theirs no longer has and ours still has (a commit both
    sides dropped is gone from ours already). Ours + it = base + both sides' changes, exact:
    low-rank factors are concatenated. Also the written keys (layer -> [n, d_in]) and the
    carried state the sum adds."""
    from kedit_vc.store.carried import negated, summed

    from .commit import _merge_keys

    total: "Delta | None" = None
    keys: "dict[int, Any]" = {}
    carried: list[Any] = []
    for sha, sign in [(c, 1) for c in plan.theirs_added] + [(c, -1) for c in plan.theirs_dropped]:
        record = store.read_commit(sha)
        delta = record.delta()
        assert delta is not None
        part = delta if sign > 0 else delta.inverse()
        total = part if total is None else total.compose(part)
        if sign > 0:
            _merge_keys(keys, record.keys())
        carried.append(record.carried() if sign > 0 else negated(record.carried()))
    if total is None:  # theirs changed no weights since the base (e.g. only superseding edits)
        from kedit_vc.delta import Delta

        total = Delta({}, {})
    return smallest_form(total), keys, (summed(carried) if any(carried) else {})


def _compose_plan(store: "Store", edits: Sequence[LiveEdit]) -> Plan:
    """The calls that made the composed deltas: each edit under the method and settings its
    own commit used, consecutive edits of one call grouped (what ``kvc show`` lists)."""
    calls: list[EditorCall] = []
    for edit in edits:
        name, settings = _call_of(store, edit)
        last = calls[-1] if calls else None
        if last is not None and (last.method, json.dumps(dict(last.hparams), sort_keys=True)) == (name, settings):
            calls[-1] = EditorCall(name, dict(last.hparams), last.requests + (edit.request,))
        else:
            calls.append(EditorCall(name, json.loads(settings), (edit.request,)))
    return Plan(calls=tuple(calls))


def _composed(store: "Store", plan: _MergePlan, evaluator: Evaluator, union: Sequence[LiveEdit],
              before: Evaluation) -> _Made:
    """The ``compose`` strategy: ours' weights + (theirs' - the base's), scored and gated."""
    import time

    began = time.perf_counter()
    evaluator.move_to(plan.ours)
    delta, keys, carried = composed_delta(store, plan)
    evaluator.weights.apply(delta)
    evaluator.mark_changed()
    summed_s = time.perf_counter() - began
    requests = tuple(e.request for e in union)
    after = summarize(evaluator.score_now(requests), before.pre,
                      extra={"delta_bytes": float(delta.summary().stored_bytes)})
    losses = tuple(find_losses(requests, before.report, after))
    infos = [{"method": COMPOSE, "commits_added": len(plan.theirs_added),
              "commits_subtracted": len(plan.theirs_dropped)}]
    return _Made(COMPOSE, COMPOSE, _compose_plan(store, union), delta, keys, carried, infos, after, losses,
                 summed_s, time.perf_counter() - began)


def _weakened(made: _Made) -> int:
    return len({loss.edit_id for loss in made.losses})


def _choose(tries: Sequence[_Made], asked: str, picks: Mapping[tuple[str, str], str]) -> tuple[_Made, str]:
    """The attempt to keep and why: the one asked for; under auto the re-solve unless it
    weakens an edit, then whichever of the two weakens fewer edits (the re-solve on a tie)."""
    first = tries[0]
    if asked != AUTO:
        return first, f"--strategy {asked}"
    if not first.losses:
        return first, f"auto: the {first.method} re-solve weakens no edit"
    if picks:
        return first, (f"auto: the {first.method} re-solve weakens {_weakened(first)} edit(s); compose cannot "
                       "drop one side of a conflict, so it was not tried")
    second = tries[1]
    if _weakened(second) < _weakened(first):
        tail = "none" if not second.losses else f"only {_weakened(second)}"
        return second, (f"auto: the {first.method} re-solve would weaken {_weakened(first)} edit(s); composing "
                        f"both sides' deltas weakens {tail}")
    return first, (f"auto: the {first.method} re-solve weakens {_weakened(first)} edit(s) and composing "
                   f"{_weakened(second)}; the re-solve is kept")


def _finish_merge(store: "Store", plan: _MergePlan, name: str, picks: Mapping[tuple[str, str], str],
                  options: _Options) -> MergeResult:
    ours_edits, theirs_edits = _union(plan, picks)
    union = ours_edits + theirs_edits
    requests = tuple(e.request for e in union)
    if not requests:  # e.g. the other side only reverted: nothing to solve, no weights to add
        raise UsageError(f"{name} adds no edit that is not live here; nothing to merge")
    if options.strategy == COMPOSE and picks:
        raise UsageError("--strategy compose sums both sides' deltas, so it cannot drop one side of a "
                         "conflict; finish this merge with --strategy resolve (or auto)")
    evaluator = Evaluator(store, progress=options.progress, batch_size=options.eval_batch_size)
    before = _joined([evaluator.evaluate(plan.ours, [e.request for e in ours_edits]),
                      evaluator.evaluate(plan.theirs, [e.request for e in theirs_edits])])
    tries: list[_Made] = []
    if options.strategy != COMPOSE:
        call_plan = _plan_for(store, union, options.method, options.hparams)
        tries.append(_resolved(store, plan, evaluator, call_plan, before, options.progress))
    if options.strategy == COMPOSE or (options.strategy == AUTO and tries[0].losses and not picks):
        tries.append(_composed(store, plan, evaluator, union, before))
    chosen, reason = _choose(tries, options.strategy, picks)
    union_keys = {e.key for e in union}
    kept_ids = {e.request.edit_id for e in plan.kept if e.key not in union_keys}
    live_ours_ids = {e.request.edit_id for e in live_edits(store, plan.ours)}
    superseded = tuple(sorted(live_ours_ids - kept_ids))
    attempts = tuple(t.to_json() for t in tries)
    result = MergeResult("merge", None, plan.ours, plan.theirs, plan.base, "refused", requests, before.report,
                         chosen.after, chosen.losses, chosen.method, superseded, strategy=chosen.strategy,
                         reason=reason, attempts=attempts)
    if chosen.losses and not options.allow_loss and not options.dry_run:
        raise MergeRefused(result)
    if options.dry_run:
        return _replace(result, outcome="dry-run")
    dropped = tuple(c for c in plan.live_ours if c not in plan.start)
    how = f"re-solved with {chosen.method}" if chosen.strategy == RESOLVE else "composed"
    title = options.message or f"Merge {name}: {len(ours_edits)} + {len(theirs_edits)} edit(s) {how}"
    payload = CommitInput(
        title, delta=chosen.delta, op="merge", merge_parent=plan.theirs,
        spec_text=_union_spec(requests, title), spec_name=None, plan=chosen.plan.to_json(),
        metrics={**chosen.after.to_json(), "before": before.report.to_json()}, method=chosen.method,
        hparams=dict(chosen.plan.calls[0].hparams) if chosen.strategy == RESOLVE else {},
        edit_ids=tuple(r.edit_id for r in requests),
        timings={"edit_s": round(chosen.edit_s, 4)}, keys=chosen.keys, carried=chosen.carried,
        extra={"editor_info": chosen.infos, "supersedes": list(superseded),
               "merge": {"base": plan.base, "name": name, "dropped": list(dropped), "ours_edits": len(ours_edits),
                         "theirs_edits": len(theirs_edits), "picked": {f"{k[0]}|{k[1]}": v for k, v in picks.items()},
                         "strategy": chosen.strategy, "strategy_reason": reason, "attempts": list(attempts)},
               **({"weakened": [loss.to_json() for loss in chosen.losses]} if chosen.losses else {})})
    sha = store.write_commit(payload, expected_head=plan.ours)
    return _replace(result, sha=sha, outcome="merged")


def _start_carried(store: "Store", base: str, dropped: Sequence[str]) -> "dict[str, Any]":
    """The carried state of the start weights: the base's less the dropped commits'."""
    from kedit_vc.store.carried import negated, summed

    state = store.carried_state(base)
    parts = [negated(store.read_commit(sha).carried()) for sha in dropped]
    return summed([state, *parts]) if any(parts) else state


def _replace(result: MergeResult, **changes: Any) -> MergeResult:
    from dataclasses import replace

    return replace(result, **changes)


# -- cherry-pick ---------------------------------------------------------------------------------


def cherry_pick(store: "Store", rev: str, *, method: str | None = None, hparams: Mapping[str, Any] | None = None,
                message: str | None = None, allow_loss: bool = False, dry_run: bool = False, wait: bool = False,
                progress: bool = False, eval_batch_size: int = 16) -> MergeResult:
    """Re-solve commit ``rev``'s edits on HEAD's weights and commit them (see the module docstring)."""
    options = _Options(method, dict(hparams or {}), message, allow_loss, dry_run, progress, eval_batch_size)
    with store.lock(wait):
        _refuse_if_pending(store)
        head, picked = store.head(), store.resolve(rev)
        record = store.read_commit(picked)
        if record.op not in ("edit", "squash", "merge") and source_commit(store, picked) is None:
            raise UsageError(f"{rev} ({record.short}) is a {record.op} commit: it adds no edit to pick")
        _refuse_patch_edits(store, [picked], "cherry-pick")
        pairs = _pick_conflicts(store, head, picked)
        if pairs:
            _stop_at_conflicts(store, "cherry-pick", pairs, (head, picked, None), rev, options, dry_run)
        return _finish_pick(store, head, picked, rev, {}, options)


def _picked_edits(store: "Store", picked: str) -> list[LiveEdit]:
    from .history import commit_requests

    return [LiveEdit(picked, r) for r in commit_requests(store, picked)]


def _pick_conflicts(store: "Store", head: str, picked: str) -> list[tuple[LiveEdit, LiveEdit]]:
    return _find_conflicts(live_edits(store, head), _picked_edits(store, picked))


def _finish_pick(store: "Store", head: str, picked: str, name: str, picks: Mapping[tuple[str, str], str],
                 options: _Options) -> MergeResult:
    live = live_edits(store, head)
    live_ids = {e.request.edit_id for e in live}
    live_by_key = {e.key: e for e in live}
    edits, skipped, superseded = [], [], []
    for edit in _picked_edits(store, picked):
        if edit.request.edit_id in live_ids:
            skipped.append(edit.request.edit_id)
        elif picks.get(edit.key, edit.request.target_new) == edit.request.target_new:
            edits.append(edit)
            if edit.key in live_by_key:  # the user kept the picked object over HEAD's
                superseded.append(live_by_key[edit.key].request.edit_id)
    if not edits:
        return MergeResult("cherry-pick", None, head, picked, None, "up-to-date", skipped=tuple(skipped))
    requests = tuple(e.request for e in edits)
    call_plan = _plan_for(store, edits, options.method, options.hparams)
    evaluator = Evaluator(store, progress=options.progress, batch_size=options.eval_batch_size)
    before = evaluator.evaluate(picked, requests)
    evaluator.move_to(head)
    solved = resolve(evaluator, call_plan, before, store.live_keys(head), options.progress,
                     store.carried_state(head))
    method = call_plan.calls[0].method
    result = MergeResult("cherry-pick", None, head, picked, None, "refused", requests, before.report,
                         solved.after, solved.losses, method, tuple(superseded), tuple(skipped))
    if solved.losses and not options.allow_loss and not options.dry_run:
        raise MergeRefused(result)
    if options.dry_run:
        return _replace(result, outcome="dry-run")
    record = store.read_commit(picked)
    summary = record.message.splitlines()[0] if record.message else record.short
    title = options.message or f"Cherry-pick {record.short}: {summary}"
    payload = CommitInput(
        title, delta=solved.delta, op="edit", spec_text=_union_spec(requests, title), plan=call_plan.to_json(),
        metrics={**solved.after.to_json(), "before": before.report.to_json()}, method=method,
        hparams=dict(call_plan.calls[0].hparams), edit_ids=tuple(r.edit_id for r in requests),
        timings={"edit_s": round(solved.seconds, 4)}, keys=solved.keys, carried=solved.carried,
        extra={"editor_info": solved.infos, "supersedes": sorted(superseded), "cherry_picked_from": picked,
               **({"weakened": [loss.to_json() for loss in solved.losses]} if solved.losses else {})})
    sha = store.write_commit(payload, expected_head=head)
    return _replace(result, sha=sha, outcome="merged")


# -- finishing a stopped merge or cherry-pick -------------------------------------------------------


def resume(store: "Store", *, allow_loss: bool = False, dry_run: bool = False, wait: bool = False,
           progress: bool = False, eval_batch_size: int = 16) -> MergeResult:
    """``--continue``: read the edited conflicts spec and finish; the state is removed once
    the commit is written (a refusal or an error keeps it, to try again or abort)."""
    with store.lock(wait):
        state = pending(store)
        if state is None:
            raise UsageError("no merge or cherry-pick is in progress (nothing to continue)")
        kind = state["kind"]
        head = store.head()
        if head != state["ours"]:
            raise StoreError(f"HEAD moved from {state['ours'][:10]} to {head[:10]} since the {kind} stopped; "
                             f"`kvc {kind} --abort` and start it again")
        picks = _picks(store, state)
        saved = state.get("options", {})
        options = _Options(saved.get("method"), saved.get("hparams") or {}, saved.get("message"), allow_loss,
                           dry_run, progress, eval_batch_size, saved.get("strategy", STRATEGY))
        if kind == "merge":
            plan = _merge_plan(store, state["ours"], state["theirs"], state["base"])
            result = _finish_merge(store, plan, state["name"], picks, options)
        else:
            result = _finish_pick(store, head, state["theirs"], state["name"], picks, options)
        if not dry_run:
            _clear_state(store)
        return result

"""What ``kvc show``, ``kvc diff`` and ``kvc status`` report, as plain data.

Parameter-level differences come from the deltas alone (no model): the commits live
at B and not at A, minus those live at A and not at B, summed per tensor with the
factors kept, so norms and ranks are exact and cheap. Knowledge-level differences are
the live edits added and removed; with a model, the probes whose predictions differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kedit_vc.compiler.plan import Plan
from kedit_vc.compiler.summary import summarize as plan_text
from kedit_vc.eval.registry import HEADLINES

from .history import LiveEdit, live_edits

if TYPE_CHECKING:
    from kedit_vc.delta import Delta
    from kedit_vc.store import CommitRecord, Store


def derived_of(record: "CommitRecord") -> list[dict[str, Any]]:
    """The derived edits a commit records: id, parent edit, rule and evidence."""
    if not record.plan:
        return []
    return [{"edit_id": r.edit_id, "subject": r.subject, "target_new": r.target_new, **r.derived.to_json()}
            for r in Plan.from_json(record.plan).derived if r.derived is not None]


def show(store: "Store", rev: str) -> dict[str, Any]:
    """A commit: manifest, message, spec, plan (as text), delta summary, its non-delta patches
    described (a codebook's module, entries added, radii), metrics."""
    record = store.read_commit(rev)
    delta = record.delta()
    return {
        "commit": record.sha, "parents": list(record.parents), "message": record.message,
        "author": record.author, "time": record.time, "manifest": dict(record.manifest),
        "spec": record.spec_text,
        "plan": plan_text(Plan.from_json(record.plan), probes=False) if record.plan else None,
        "delta": delta.summary().to_json() if delta is not None else None,
        "patches": [dict(p.describe()) for p in record.patches()],
        "metrics": dict(record.metrics),
        "derived": derived_of(record),
    }


def net_delta(store: "Store", a: str, b: str) -> tuple["Delta | None", list[str], list[str]]:
    """(B's weights minus A's as a delta, commits live only at B, commits live only at A)."""
    live_a, live_b = store.live_commits(a), store.live_commits(b)
    added = [s for s in live_b if s not in live_a]
    removed = [s for s in live_a if s not in live_b]
    total = None
    for sha, sign in [(s, 1) for s in added] + [(s, -1) for s in removed]:
        delta = store.read_commit(sha).delta()
        assert delta is not None
        delta = delta if sign > 0 else delta.inverse()
        total = delta if total is None else total.compose(delta)
    return total, added, removed


@dataclass(frozen=True)
class ProbeChange:
    edit_id: str
    kind: str
    prompt: str
    at_a: str
    at_b: str


@dataclass(frozen=True)
class Diff:
    a: str
    b: str
    delta: dict[str, Any] | None       # DeltaSummary.to_json of B - A
    patches_added: list[dict[str, Any]]    # describe() of non-delta patches live at B only (+ "commit")
    patches_removed: list[dict[str, Any]]  # ... live at A only
    commits_added: list[str]
    commits_removed: list[str]
    edits_added: list[LiveEdit]
    edits_removed: list[LiveEdit]
    changed: list[ProbeChange] | None  # with --eval

    def to_json(self) -> dict[str, Any]:
        def edit(e: LiveEdit) -> dict[str, Any]:
            r = e.request
            return {"commit": e.sha, "edit_id": r.edit_id, "subject": r.subject, "prompt": r.prompt,
                    "target_true": r.target_true, "target_new": r.target_new}
        return {"a": self.a, "b": self.b, "delta": self.delta, "commits_added": self.commits_added,
                "patches_added": self.patches_added, "patches_removed": self.patches_removed,
                "commits_removed": self.commits_removed, "edits_added": [edit(e) for e in self.edits_added],
                "edits_removed": [edit(e) for e in self.edits_removed],
                "changed_predictions": None if self.changed is None else [c.__dict__ for c in self.changed]}


def diff(store: "Store", rev_a: str, rev_b: str, *, evaluate: bool = False, progress: bool = False) -> Diff:
    a, b = store.resolve(rev_a), store.resolve(rev_b)
    delta, added, removed = net_delta(store, a, b)
    edits_a, edits_b = live_edits(store, a), live_edits(store, b)
    ids_a = {e.request.edit_id for e in edits_a}
    ids_b = {e.request.edit_id for e in edits_b}
    changed = None
    if evaluate:
        changed = _changed_predictions(store, a, b, edits_a, edits_b, progress)
    return Diff(a, b, delta.summary().to_json() if delta is not None else None,
                _described(store, added), _described(store, removed), added, removed,
                [e for e in edits_b if e.request.edit_id not in ids_a],
                [e for e in edits_a if e.request.edit_id not in ids_b], changed)


def _described(store: "Store", shas: list[str]) -> list[dict[str, Any]]:
    return [{"commit": sha, **p.describe()} for sha in shas for p in store.read_commit(sha).patches()]


def _changed_predictions(store: "Store", a: str, b: str, edits_a: list[LiveEdit], edits_b: list[LiveEdit],
                         progress: bool) -> list[ProbeChange]:
    """Probes of the edits live at A or B whose teacher-forced argmax differs between them."""
    from .evaluate import Evaluator

    requests = tuple({e.request.edit_id: e.request for e in [*edits_a, *edits_b]}.values())
    evaluator = Evaluator(store, progress=progress)
    at_a, at_b = evaluator.scores_at(a, requests), evaluator.scores_at(b, requests)
    decode = evaluator.loaded.tokenizer.decode
    out = []
    for ea, eb in zip(at_a.edits, at_b.edits):
        for pa, pb in zip(ea.probes, eb.probes):
            if pa.argmax_ids != pb.argmax_ids:
                out.append(ProbeChange(ea.edit_id, pa.kind, pa.prompt, decode(list(pa.argmax_ids)),
                                       decode(list(pb.argmax_ids))))
    return out


def status(store: "Store") -> dict[str, Any]:
    """Where the store is, its base model, HEAD, and what is live; no model is loaded."""
    from kedit_vc.store import refs

    from .merge import pending

    head = store.head()
    chain = store.chain(head)
    live = store.live_commits(head)
    return {
        "root": str(store.paths.root), "repository": str(store.paths.repo),
        "branch": refs.current_branch(store) or "(detached)",
        "branches": len(refs.branches(store)), "tags": len(refs.tags(store)),
        "in_progress": (pending(store) or {}).get("kind"),
        "head": head, "base_model": store.model_ref, "base_fingerprint": store.fingerprint,
        "commits": len(chain) - 1, "live_commits": len(live),
        "live_edits": len(live_edits(store, head)),
        "squashed_refs": len(store.squashed_refs()),
    }


def headline(record: "CommitRecord") -> dict[str, float]:
    """The headline metrics recorded with a commit (post-edit values of its own probes)."""
    metrics = record.metrics.get("metrics", {}) if isinstance(record.metrics, dict) else {}
    return {k: metrics[k] for k in HEADLINES if k in metrics}

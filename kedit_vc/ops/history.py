"""Which edits are live at a point of history, and which new edits contradict them.

An edit is a request of a live commit's plan (``Store.live_commits``), unless a later
live commit superseded it (``manifest.extra.supersedes``: edit ids it replaced). A live
revert whose target is itself a revert re-applies the edits of the target's target.
Two edits contradict when they rewrite the same subject through the same prompt
template (the relation); the new object may differ or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from kedit_vc.compiler.plan import EditRequest, Plan

if TYPE_CHECKING:
    from kedit_vc.store import Store


@dataclass(frozen=True)
class LiveEdit:
    """An edit in effect and the commit whose delta carries it."""

    sha: str
    request: EditRequest

    @property
    def key(self) -> tuple[str, str]:
        return fact_key(self.request)


def fact_key(request: EditRequest) -> tuple[str, str]:
    """What an edit rewrites: (subject, prompt template)."""
    return (request.subject, request.prompt)


def source_commit(store: "Store", sha: str) -> str | None:
    """The commit whose edits ``sha``'s delta adds: itself, or for a revert of a revert the
    twice-reverted commit; None for a plain revert (it adds no edit)."""
    record = store.read_commit(sha)
    if record.op != "revert":
        return sha
    target = store.read_commit(record.reverts or "")
    if target.op == "revert" and target.reverts:
        return source_commit(store, target.reverts)
    return None


def commit_requests(store: "Store", sha: str) -> tuple[EditRequest, ...]:
    """The edit requests whose effect commit ``sha``'s delta adds."""
    source = source_commit(store, sha)
    plan = store.read_commit(source).plan if source else None
    return Plan.from_json(plan).requests if plan else ()


def supersedes(store: "Store", sha: str) -> set[str]:
    """Edit ids that the edits ``sha`` adds replaced (``--supersede``)."""
    source = source_commit(store, sha)
    return set(store.read_commit(source).manifest.get("extra", {}).get("supersedes", ())) if source else set()


def live_edits(store: "Store", rev: str = "HEAD") -> list[LiveEdit]:
    """Edits in effect at ``rev``, oldest first."""
    edits: list[LiveEdit] = []
    for sha in store.live_commits(rev):
        replaced = supersedes(store, sha)
        if replaced:
            edits = [e for e in edits if e.request.edit_id not in replaced]
        edits += [LiveEdit(sha, r) for r in commit_requests(store, sha)]
    return edits


def find_conflicts(live: Sequence[LiveEdit], requests: Sequence[EditRequest]) -> list[tuple[LiveEdit, EditRequest]]:
    """(live edit, new request) pairs that rewrite the same fact."""
    by_key = {e.key: e for e in live}
    return [(by_key[fact_key(r)], r) for r in requests if fact_key(r) in by_key]

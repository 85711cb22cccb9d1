"""History rewriting as pure functions: what a revert, a squash and a replay record.

Each takes what was read from the history (manifests, the target's delta and carried
tensors, the first-parent chain) and returns what to write (a payload, a squash plan, a
replayed manifest). No git and no files here: the ``Store`` reads what these need, and
writes what they return under its lock, objects first and refs last.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from kedit_vc.errors import StoreError

from . import carried as carried_state
from .history import live_commits
from .layout import SQUASHED_REF_PREFIX
from .manifest import CommitInput

if TYPE_CHECKING:
    import torch

    from kedit_vc.delta import Delta


def revert_input(
    payload: CommitInput,
    target: str,
    target_manifest: Mapping[str, Any],
    target_delta: "Delta | None",
    target_carried: "Mapping[str, torch.Tensor]",
    target_patches: Sequence[Any] = (),
) -> CommitInput:
    """The revert of commit ``target``: the exact inverse of its delta, the negation of its
    carried tensors, a copy of its non-delta patches (live only if the revert itself becomes
    live, i.e. when it undoes a revert), and its edit ids unless the payload names others."""
    if target_manifest["op"] == "init" or target_delta is None:
        raise StoreError("the initial commit has no delta to revert")
    inverse = target_delta.inverse()
    if payload.delta is not None and payload.delta.content_hash() != inverse.content_hash():
        raise StoreError("a revert's delta must be the exact inverse of its target's; pass none")
    if payload.carried:
        raise StoreError("a revert's carried state is the negation of its target's; pass none")
    if payload.patches:
        raise StoreError("a revert's patches are its target's, copied by the store; pass none")
    edit_ids = payload.edit_ids or tuple(target_manifest.get("edit_ids") or ())
    return replace(payload, delta=inverse, reverts=target, edit_ids=edit_ids,
                   carried=carried_state.negated(target_carried), patches=tuple(target_patches))


@dataclass(frozen=True)
class SquashPlan:
    """A squash of (``base``, ``tip``] on a history whose head is ``head``.

    ``inside``: the commits it replaces, oldest first; ``after``: the commits after ``tip``,
    replayed on top of the squash commit; ``kept_at``: the ref that keeps the old history.
    """

    head: str
    base: str
    tip: str
    inside: tuple[str, ...]
    after: tuple[str, ...]

    @property
    def kept_at(self) -> str:
        return SQUASHED_REF_PREFIX + self.head

    def record(self) -> dict[str, Any]:
        """The manifest's ``squash`` entry."""
        return {"base": self.base, "tip": self.tip, "commits": list(self.inside), "kept_at": self.kept_at}


def plan_squash(
    chain: Sequence[str], base: str, tip: str, manifests: Mapping[str, Mapping[str, Any]], label: str
) -> SquashPlan:
    """Check that (``base``, ``tip``] can be squashed on ``chain`` (root first, head last).

    ``manifests``: those of the commits after ``base``. ``label``: the range as the user wrote it.
    A revert inside the range must target a commit inside it, and no commit after it may
    revert one inside it (the squash would leave it nothing to revert).
    """
    if base not in chain or tip not in chain or chain.index(base) >= chain.index(tip):
        raise StoreError(f"{label} is not a range of HEAD's history")
    inside = tuple(chain[chain.index(base) + 1 : chain.index(tip) + 1])
    after = tuple(chain[chain.index(tip) + 1 :])
    for sha in inside:
        target = manifests[sha].get("reverts")
        if target and target not in inside:
            raise StoreError(
                f"{sha[:10]} in the range reverts {target[:10]}, which is before it; "
                f"start the range before {target[:10]}"
            )
    for sha in inside + after:
        if manifests[sha].get("op") == "merge":
            raise StoreError(f"{sha[:10]} is a merge: a squash cannot rewrite history across it (its second "
                             f"parent would be lost); squash a range after {sha[:10]}")
    for sha in after:
        if manifests[sha].get("reverts") in inside:
            raise StoreError(f"{sha[:10]}, after the range, reverts a commit inside it; extend the range to {sha[:10]}")
    return SquashPlan(chain[-1], base, tip, inside, after)


def squash_carriers(plan: SquashPlan, manifests: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The commits of the range whose carried tensors the squash commit sums: those live at
    ``tip`` (the range's reverts only target commits inside it)."""
    live = live_commits((sha, manifests[sha]) for sha in plan.inside)
    return [sha for sha in live if manifests[sha].get("carried")]


def squash_input(payload: CommitInput, range_carried: "Mapping[str, torch.Tensor]") -> CommitInput:
    """The squash commit's payload: it carries the range's summed state unless it says otherwise."""
    return payload if payload.carried else replace(payload, carried=dict(range_carried))


def replayed_manifest(manifest: Mapping[str, Any], parent: str, renamed: Mapping[str, str]) -> dict[str, Any]:
    """A commit's manifest copied onto a new parent; a revert re-pointed at its renamed target."""
    reverts = manifest.get("reverts")
    return dict(manifest, parent=parent, reverts=renamed.get(reverts, reverts) if reverts else reverts)

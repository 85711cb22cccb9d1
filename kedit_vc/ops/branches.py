"""``kvc branch``, ``kvc switch``, ``kvc tag``: named lines of history and named commits.

Plain functions over the store's refs (``kedit_vc.store.refs``); no model is loaded.
Switching re-points HEAD and makes the HEAD cache the new branch's (restored from where
the last switch parked it, or rebuilt), so the next command materialises its weights
from one file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.errors import StoreError
from kedit_vc.store import refs

if TYPE_CHECKING:
    from kedit_vc.store import Store


@dataclass(frozen=True)
class Branch:
    name: str
    sha: str
    current: bool
    title: str      # the first line of its tip's message


def _title(store: "Store", sha: str) -> str:
    message = store.read_commit(sha).message
    return message.splitlines()[0] if message else ""


def list_branches(store: "Store") -> list[Branch]:
    """Every branch, by name; ``current`` marks the one HEAD is on."""
    current = refs.current_branch(store)
    return [Branch(name, sha, name == current, _title(store, sha)) for name, sha in refs.branches(store).items()]


def create_branch(store: "Store", name: str, start: str = "HEAD") -> str:
    """A branch ``name`` at ``start`` (a revision); returns its sha. HEAD does not move."""
    refs.check_ref_name(name, "branch NAME")
    sha = store.resolve(start)
    refs.create_ref(store, refs.BRANCH_PREFIX, name, sha, "branch NAME")
    return sha


def is_ancestor(store: "Store", older: str, newer: str) -> bool:
    """Whether commit ``older`` is ``newer`` or one of its ancestors (any parent)."""
    status, _, _ = store.repo.git.merge_base("--is-ancestor", older, newer, with_extended_output=True,
                                             with_exceptions=False)
    return status == 0


def delete_branch(store: "Store", name: str, force: bool = False) -> str:
    """Delete branch ``name``; refused for the current branch, and unless ``force`` for a
    branch whose tip is not in HEAD's history (its commits would be left unreachable)."""
    sha = refs.branch_sha(store, name)
    if sha is not None and not force and not is_ancestor(store, sha, store.head()):
        raise StoreError(f"branch {name!r} is not merged into HEAD ({sha[:10]} is not in its history); "
                         f"merge it first (`kvc merge {name}`), or delete it anyway with -D")
    return refs.delete_branch(store, name)


@dataclass(frozen=True)
class Switched:
    branch: str
    old: str
    new: str


def switch(store: "Store", name: str) -> Switched:
    """Attach HEAD to branch ``name`` (refused while a merge or cherry-pick waits to be finished)."""
    from .merge import pending

    refs.check_ref_name(name, "switch NAME")
    state = pending(store)
    if state is not None:
        raise StoreError(f"a {state['kind']} is in progress; finish it (`kvc {state['kind']} --continue`) "
                         f"or abandon it (`kvc {state['kind']} --abort`) before switching")
    old, new = refs.switch(store, name)
    return Switched(name, old, new)


def list_tags(store: "Store") -> dict[str, str]:
    """tag -> commit sha, by name."""
    return refs.tags(store)


def create_tag(store: "Store", name: str, rev: str = "HEAD") -> str:
    """A tag ``name`` on ``rev``; returns the commit's sha. Tags never move."""
    refs.check_ref_name(name, "tag NAME")
    sha = store.resolve(rev)
    refs.create_ref(store, refs.TAG_PREFIX, name, sha, "tag NAME")
    return sha


@dataclass(frozen=True)
class GraphLine:
    """One line of ``kvc log --graph``: git's drawing of the parents, and the commit on it (if any)."""

    graph: str
    sha: str | None
    refs: tuple[str, ...]   # branch and tag names pointing here ("HEAD -> main", "tag: v1")


def graph(store: "Store", rev: str = "HEAD", limit: int | None = None, all_branches: bool = False) -> list[GraphLine]:
    """The history of ``rev`` (every branch and tag with ``all_branches``) with both parents of
    each merge drawn, newest first; ``limit`` counts commits."""
    targets = ["--branches", "--tags"] if all_branches else [store.resolve(rev)]
    args = ["--graph", "--topo-order", "--format=%x01%H%x02%D", *(["-n", str(limit)] if limit else []), *targets]
    lines = []
    for text in store.repo.git.log(*args).splitlines():
        drawing, marker, rest = text.partition("\x01")
        if not marker:
            lines.append(GraphLine(text, None, ()))
            continue
        sha, _, names = rest.partition("\x02")
        lines.append(GraphLine(drawing, sha, tuple(n.strip() for n in names.split(",") if n.strip())))
    return lines

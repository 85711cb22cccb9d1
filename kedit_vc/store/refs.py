"""Branches and tags: named refs of the store's repository, written under the writer lock.

A branch is ``refs/heads/<name>``, a tag ``refs/tags/<name>`` (lightweight: it names a
commit, which already records who made it and when). HEAD is a symbolic ref to the
current branch; ``switch`` re-points it with ``git symbolic-ref`` (which writes
``HEAD.lock`` and renames it: atomic). Branch and tag refs move by ``gitio.set_ref``
(compare-and-swap by atomic rename). Names follow ``git check-ref-format`` (checked here,
so the error says which rule a name breaks and which argument it came from). Nothing
here knows of edits or weights; the HEAD cache is parked and restored around a switch
(see ``headcache.HeadCache.park``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import git

from kedit_vc.errors import StoreError, UsageError

from . import gitio

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger(__name__)

BRANCH_PREFIX = "refs/heads/"
TAG_PREFIX = "refs/tags/"

_FORBIDDEN = {" ": "a space", "~": "'~'", "^": "'^'", ":": "':'", "?": "'?'", "*": "'*'", "[": "'['",
              "\\": "a backslash"}


def ref_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid branch or tag name (``git check-ref-format --branch``), or None."""
    if not name:
        return "it is empty"
    if name.startswith("-"):
        return "it starts with '-' (it would read as an option)"
    if name in ("HEAD", "@"):
        return f"{name!r} is reserved"
    for char in name:
        if ord(char) < 32 or ord(char) == 127:
            return "it contains a control character"
        if char in _FORBIDDEN:
            return f"it contains {_FORBIDDEN[char]}"
    if ".." in name:
        return "it contains '..'"
    if "@{" in name:
        return "it contains '@{'"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "it starts or ends with '/' or has an empty component ('//')"
    if name.endswith("."):
        return "it ends with '.'"
    for part in name.split("/"):
        if part.startswith("."):
            return f"its component {part!r} starts with '.'"
        if part.endswith(".lock"):
            return f"its component {part!r} ends with '.lock'"
    return None


def check_ref_name(name: str, what: str) -> str:
    """``name`` if valid, else ``UsageError`` naming ``what`` (the argument or flag it came from)."""
    problem = ref_name_problem(name)
    if problem is not None:
        raise UsageError(f"{what}: {name!r} is not a valid name: {problem} (git check-ref-format rules)")
    return name


def current_branch(store: "Store") -> str | None:
    """The branch HEAD is on (``main``), or None for a detached HEAD."""
    try:
        return store.repo.git.symbolic_ref("-q", "HEAD").removeprefix(BRANCH_PREFIX)
    except git.GitCommandError:
        return None


def branches(store: "Store") -> dict[str, str]:
    """branch name -> sha, sorted by name."""
    return {ref.removeprefix(BRANCH_PREFIX): sha for ref, sha in sorted(gitio.refs_under(store.repo,
                                                                                          BRANCH_PREFIX).items())}


def tags(store: "Store") -> dict[str, str]:
    """tag name -> the sha of the commit it names, sorted by name."""
    out = store.repo.git.for_each_ref("--format=%(refname) %(*objectname) %(objectname)", TAG_PREFIX)
    found = {}
    for line in out.splitlines():
        ref, peeled, sha = (line.split(" ") + ["", ""])[:3]
        found[ref.removeprefix(TAG_PREFIX)] = peeled or sha
    return dict(sorted(found.items()))


def branch_sha(store: "Store", name: str) -> str | None:
    return gitio.ref_value(store.repo, BRANCH_PREFIX + name)


def create_ref(store: "Store", prefix: str, name: str, sha: str, what: str) -> None:
    """Create ``prefix + name`` at ``sha``; refuse a name taken (or one that is a folder of others)."""
    ref = prefix + check_ref_name(name, what)
    kind = "branch" if prefix == BRANCH_PREFIX else "tag"
    with store.lock():
        if gitio.ref_value(store.repo, ref) is not None:
            raise StoreError(f"a {kind} named {name!r} already exists")
        taken = [other for other in gitio.refs_under(store.repo, prefix)
                 if other.startswith(ref + "/") or ref.startswith(other + "/")]
        if taken:
            raise StoreError(f"{kind} name {name!r} clashes with {taken[0].removeprefix(prefix)!r} "
                             "(one would be a folder of the other)")
        gitio.set_ref(store.repo, ref, sha, None, store.paths.tmp)


def move_branch(store: "Store", name: str, new: str, expected_old: str) -> None:
    """Point branch ``name`` at ``new`` if it is still at ``expected_old`` (caller holds the lock)."""
    gitio.set_ref(store.repo, BRANCH_PREFIX + name, new, expected_old, store.paths.tmp)


def delete_branch(store: "Store", name: str) -> str:
    """Delete branch ``name`` (not the current one); returns the sha it pointed to."""
    with store.lock():
        sha = branch_sha(store, name)
        if sha is None:
            raise StoreError(f"no branch named {name!r}; `kvc branch` lists them")
        if name == current_branch(store):
            raise StoreError(f"cannot delete the current branch {name!r}; `kvc switch` to another first")
        # update-ref with the old value: compare-and-swap, loose and packed refs alike
        store.repo.git.update_ref("-d", BRANCH_PREFIX + name, sha)
        return sha


def _cache_for(store: "Store", old: str, new: str, label: str) -> None:
    """Park ``old``'s HEAD cache and restore (or rebuild) ``new``'s: housekeeping that cannot
    fail the move (a cache not made here is rebuilt at the next checkout)."""
    try:
        if old != new:
            store.head_cache.park(old)
        if not store.head_cache.restore(new):
            store.head_cache.rebuild(new)
    except (StoreError, OSError) as error:
        log.warning("kvc: HEAD cache not prepared for %s (%s)", label, error)


def fast_forward(store: "Store", new: str, expected_old: str) -> None:
    """Move the current branch from ``expected_old`` to ``new`` (a descendant; caller checks)."""
    with store.lock():
        branch = gitio.branch_ref(store.repo)
        gitio.set_ref(store.repo, branch, new, expected_old, store.paths.tmp)
        _cache_for(store, expected_old, new, branch)


def switch(store: "Store", name: str) -> tuple[str, str]:
    """Attach HEAD to branch ``name``; returns (old HEAD, new HEAD).

    The HEAD cache of the branch left is parked and the one of the branch entered restored
    (or rebuilt from the history), so the new HEAD's weights are one file away.
    """
    with store.lock():
        sha = branch_sha(store, name)
        if sha is None:
            raise StoreError(f"no branch named {name!r}; create it with `kvc branch {name}`")
        old = store.head()
        if name != current_branch(store):
            store.repo.git.symbolic_ref("HEAD", BRANCH_PREFIX + name)
        _cache_for(store, old, sha, name)
        return old, sha

"""Sharing a store: ``kvc remote``, ``push``, ``pull`` (fast-forward only) and ``clone``.

A remote is an ordinary git remote of the store's bare repository (``store.remotes``);
what travels is the branch and the kept history of squashes. Received commits are
checked twice before any ref that kvc reads moves: by git, object by object, as they
arrive; then as kvc commits (manifest, delta hash, base fingerprint, parent links, a
revert's exact inverse: ``fsck.incoming_problems``). After the branch moves, the HEAD
cache is brought to the new HEAD by replaying its writer's steps (``cachesync``), so the
weights a clone or a pull materialises are the original's, bit for bit.

A pull whose remote branch does not contain HEAD is refused: the histories diverged and
re-solving both sides' edits is ``kvc merge REMOTE/BRANCH``'s job. The remote-tracking ref
(``refs/remotes/<remote>/<branch>``) is still updated, verified, so that merge can read it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kedit_vc.errors import KvcError, StoreError

if TYPE_CHECKING:
    from kedit_vc.store import Store

log = logging.getLogger(__name__)

DEFAULT_REMOTE = "origin"


class PullDiverged(KvcError):
    """HEAD and the remote branch each have commits the other lacks: a merge is needed."""


@dataclass(frozen=True)
class PushResult:
    remote: str
    url: str
    branch: str
    head: str
    updated: tuple[str, ...]   # refs the remote took (new or fast-forwarded)
    up_to_date: tuple[str, ...]

    def to_json(self) -> dict:
        return {"remote": self.remote, "url": self.url, "branch": self.branch, "head": self.head,
                "updated": list(self.updated), "up_to_date": list(self.up_to_date)}


@dataclass(frozen=True)
class PullResult:
    """``status``: "fast-forward", "up-to-date" or "ahead" (the remote lacks local commits)."""

    remote: str
    branch: str
    old_head: str
    new_head: str
    status: str
    received: int  # commits new to this store, on every fetched ref
    squashed_refs: int  # kept histories added

    def to_json(self) -> dict:
        return {"remote": self.remote, "branch": self.branch, "old_head": self.old_head,
                "new_head": self.new_head, "status": self.status, "received": self.received,
                "squashed_refs": self.squashed_refs}


def add_remote(store: "Store", name: str, url: str) -> str:
    """Record remote ``name`` at ``url`` (a path is made absolute); returns the URL recorded."""
    from kedit_vc.store import remotes

    with store.lock():
        return remotes.add_remote(store.repo, name, url)


def remove_remote(store: "Store", name: str) -> str:
    """Forget remote ``name`` (its URL and remote-tracking refs); returns the URL it had."""
    from kedit_vc.store import remotes

    with store.lock():
        return remotes.remove_remote(store.repo, name)


def list_remotes(store: "Store") -> dict[str, str]:
    from kedit_vc.store import remotes

    return remotes.remotes(store.repo)


def _current_branch(store: "Store") -> str:
    from kedit_vc.store import gitio

    return gitio.branch_ref(store.repo).removeprefix("refs/heads/")


def _pick_remote(store: "Store", remote: str | None, branch: str) -> str:
    """The remote named, else the branch's upstream, else ``origin``, else the only one."""
    from kedit_vc.store import remotes

    if remote is not None:
        remotes.remote_url(store.repo, remote)  # unknown remote: an error saying how to add it
        return remote
    known = remotes.remotes(store.repo)
    for candidate in (remotes.upstream(store.repo, branch), DEFAULT_REMOTE):
        if candidate in known:
            return candidate
    if len(known) == 1:
        return next(iter(known))
    if not known:
        raise StoreError("this store has no remote; add one with `kvc remote add origin URL`")
    raise StoreError(f"which remote? this store has {', '.join(known)}; name one (e.g. `kvc push {next(iter(known))}`)")


def push(store: "Store", remote: str | None = None, branch: str | None = None) -> PushResult:
    """Push ``branch`` (default: HEAD's) and every kept squashed history to ``remote``.

    Atomic and never forced: a remote that moved on is left as it was and the error says
    to pull first. The branch's upstream is recorded the first time.
    """
    from kedit_vc.store import gitio, remotes
    from kedit_vc.store.layout import SQUASHED_REF_PREFIX

    branch = branch or _current_branch(store)
    ref = remotes.BRANCH_PREFIX + branch
    with store.lock():
        name = _pick_remote(store, remote, branch)
        head = gitio.ref_value(store.repo, ref)
        if head is None:
            raise StoreError(f"no branch {branch!r} in this store (see `kvc status`)")
        blobs = remotes.object_blobs(store.repo, store.paths, _object_deltas(store, head))
        specs = [f"{ref}:{ref}"] + [f"{r}:{r}" for r in sorted(store.squashed_refs())
                                     if r.startswith(SQUASHED_REF_PREFIX)]
        specs += [f"{blob}:{remotes.OBJECT_REF_PREFIX}{content}" for content, blob in sorted(blobs.items())]
        results = remotes.push(store.repo, name, specs, keep_fds=store._lock.fds)
        if remotes.upstream(store.repo, branch) is None:
            remotes.set_upstream(store.repo, branch, name)
    return PushResult(name, remotes.remote_url(store.repo, name), branch, head,
                      tuple(r.ref for r in results if r.flag in " *+"),
                      tuple(r.ref for r in results if r.flag == "="))


def _object_deltas(store: "Store", head: str) -> list[str]:
    """Content hashes of the large deltas in .kvc/objects that ``head``'s chain and the kept
    histories need."""
    shas = dict.fromkeys(store.chain(head))
    for sha in store.squashed_refs().values():
        shas.update(dict.fromkeys(store.chain(sha)))
    out = []
    for sha in shas:
        info = store.manifest(sha).get("delta")
        if info and info.get("storage") == "object":
            out.append(info["hash"])
    return sorted(set(out))


def _receive(store: "Store", name: str, url: str) -> tuple[dict[str, str], int, int]:
    """Fetch ``name``'s refs into quarantine, verify what is new, then set the remote-tracking
    refs and add the kept squashed histories (one ref transaction). Returns the remote's
    refs (ref -> sha), the number of new commits and of new squashed refs. The caller holds
    the writer lock; the quarantine is always dropped."""
    from kedit_vc.store import fsck, remotes
    from kedit_vc.store.layout import SQUASHED_REF_PREFIX

    try:
        fetched = remotes.fetch_incoming(store.repo, name, url, keep_fds=store._lock.fds)
        remotes.receive_objects(store.repo, store.paths, fetched)  # checked, content-addressed
        got = remotes.commit_refs(fetched)
        if not any(ref.startswith(remotes.BRANCH_PREFIX) for ref in got):
            raise StoreError(f"{url} has no branches: is it a kvc store? (an empty remote is filled by `kvc push`)")
        known = [ref for ref in remotes.refs_under(store.repo, "refs/")
                 if not ref.startswith(remotes.INCOMING_PREFIX)]
        new = remotes.new_commits(store.repo, got.values(), known)
        squashed = {r: s for r, s in got.items() if r.startswith(SQUASHED_REF_PREFIX)}
        problems = fsck.incoming_problems(store, got.values(), new)
        if problems:
            shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
            raise StoreError(f"what {url} sent is not a sound kvc history, nothing changed: {shown}")
        have = store.squashed_refs()
        updates: dict[str, tuple[str, str | None]] = {
            f"refs/remotes/{name}/{ref.removeprefix(remotes.BRANCH_PREFIX)}": (sha, None)
            for ref, sha in got.items() if ref.startswith(remotes.BRANCH_PREFIX)}
        added = {r: (s, "") for r, s in squashed.items() if r not in have}
        if fsck.missing_kept(store, new, squashed):  # the sender pruned them (`kvc gc --prune-squashed`)
            fsck.mark_squashed_pruned(store)
        remotes.update_refs(store.repo, {**updates, **added})
        return got, len(new), len(added)
    finally:
        remotes.clear_incoming(store.repo, name)


def pull(store: "Store", remote: str | None = None, branch: str | None = None) -> PullResult:
    """Fetch ``remote``'s branch (default: HEAD's) and fast-forward HEAD to it.

    Refused, with HEAD, the branch and the HEAD cache as they were, when the histories
    diverged (``PullDiverged``: run ``kvc merge REMOTE/BRANCH``) or share no commit.
    """
    from kedit_vc.store import gitio, headcache, remotes
    from kedit_vc.store.cachesync import replay_head_cache

    local_branch = _current_branch(store)
    branch = branch or local_branch
    with store.lock():
        name = _pick_remote(store, remote, local_branch)
        url = remotes.remote_url(store.repo, name)
        got, received, kept = _receive(store, name, url)
        theirs = got.get(remotes.BRANCH_PREFIX + branch)
        if theirs is None:
            listed = ", ".join(r.removeprefix(remotes.BRANCH_PREFIX) for r in got
                               if r.startswith(remotes.BRANCH_PREFIX))
            raise StoreError(f"{name} has no branch {branch!r} (it has: {listed}); pass --branch")
        head = store.head()
        if theirs == head or remotes.is_ancestor(store.repo, theirs, head):
            status = "up-to-date" if theirs == head else "ahead"
            return PullResult(name, branch, head, head, status, received, kept)
        if not remotes.is_ancestor(store.repo, head, theirs):
            tracking = f"{name}/{branch}"
            if remotes.merge_base(store.repo, head, theirs) is None:
                raise StoreError(f"{tracking} shares no history with this store (another store of the same "
                                 "model?); clone it into another directory with `kvc clone`")
            ours = len(store.chain(head)) - len(store.chain(remotes.merge_base(store.repo, head, theirs) or head))
            raise PullDiverged(
                f"HEAD ({head[:10]}) and {tracking} ({theirs[:10]}) have diverged ({ours} local commit(s) "
                f"not on {tracking}); nothing on {local_branch} moved. Run `kvc merge {tracking}` to merge them")
        gitio.set_ref(store.repo, gitio.branch_ref(store.repo), theirs, head, store.paths.tmp)
        try:
            replay_head_cache(store, theirs)
        except Exception as error:  # noqa: BLE001 - the ref moved; a stale cache is rebuilt on use
            headcache.remove(store.paths.head_cache)
            log.warning("kvc: HEAD cache not rebuilt (%s); the next checkout does", error)
        _pack(store)
        return PullResult(name, branch, head, theirs, "fast-forward", received, kept)


def _pack(store: "Store") -> None:
    from kedit_vc.store import gitio

    try:
        gitio.pack(store.repo, keep_fds=store._lock.fds)
    except (OSError, subprocess.CalledProcessError):
        pass  # the next write packs


def clone(url: str, directory: str | os.PathLike[str], branch: str | None = None) -> "Store":
    """Make ``<directory>/.kvc`` a copy of the kvc store at ``url``, verified, with its HEAD
    cache. Built in a staging folder and renamed into place: a failed clone leaves nothing."""
    from kedit_vc.store import Store, fsck, gitio, remotes
    from kedit_vc.store.cachesync import replay_head_cache
    from kedit_vc.store.create import GITIGNORE
    from kedit_vc.store.layout import StorePaths

    root = Path(directory).resolve()
    paths = StorePaths(root)
    if paths.kvc.exists():
        raise StoreError(f"{paths.kvc} already exists; clone into another directory")
    url = remotes.stable_url(url)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".kvc-clone-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        import git

        repo_dir = staging / ".kvc" / "repo.git"
        git.Repo.init(repo_dir, bare=True).close()
        refs = remotes.ls_remote(repo_dir, url)
        branches = sorted(r.removeprefix(remotes.BRANCH_PREFIX) for r in refs if r.startswith(remotes.BRANCH_PREFIX))
        if not branches:
            raise StoreError(f"{url} has no branches: is it a kvc store? (an empty remote is filled by `kvc push`)")
        if branch is None:
            preferred = remotes.remote_head_branch(repo_dir, url)
            only = branches[0] if len(branches) == 1 else None
            branch = next((b for b in (preferred, "main") if b in branches), only)
            if branch is None:
                raise StoreError(f"{url} has branches {', '.join(branches)}; pick one with --branch")
        elif branch not in branches:
            raise StoreError(f"{url} has no branch {branch!r} (it has: {', '.join(branches)})")
        for folder in ("objects", "tmp", "cache"):
            (staging / ".kvc" / folder).mkdir()
        (staging / ".kvc" / ".gitignore").write_text(GITIGNORE)
        repo = gitio.open_repo(repo_dir)
        repo.git.symbolic_ref("HEAD", remotes.BRANCH_PREFIX + branch)
        remotes.add_remote(repo, DEFAULT_REMOTE, url)
        fetched = remotes.fetch_incoming(repo, DEFAULT_REMOTE, url)
        remotes.receive_objects(repo, StorePaths(staging), fetched)
        got = remotes.commit_refs(fetched)
        head = got[remotes.BRANCH_PREFIX + branch]
        squashed = {r: s for r, s in got.items() if not r.startswith(remotes.BRANCH_PREFIX)}
        updates: dict[str, tuple[str, str | None]] = {
            f"refs/remotes/{DEFAULT_REMOTE}/{r.removeprefix(remotes.BRANCH_PREFIX)}": (s, None)
            for r, s in got.items() if r.startswith(remotes.BRANCH_PREFIX)}
        updates[remotes.BRANCH_PREFIX + branch] = (head, "")
        updates.update({r: (s, "") for r, s in squashed.items()})
        remotes.update_refs(repo, updates)
        remotes.clear_incoming(repo)
        remotes.set_upstream(repo, branch, DEFAULT_REMOTE)
        repo.close()
        with Store(staging) as store:
            try:
                store.config  # noqa: B018 - a tree without store.json is not a kvc store
            except StoreError:
                raise StoreError(f"{url} is not a kvc store: its {branch} has no store.json") from None
            new = remotes.new_commits(store.repo, got.values(), [])
            if fsck.missing_kept(store, new, squashed):  # the sender pruned them (`kvc gc --prune-squashed`)
                fsck.mark_squashed_pruned(store)
            problems = fsck.fsck(store) + fsck.incoming_problems(store, got.values(), new)
            if problems:
                shown = "; ".join(dict.fromkeys(problems[:3]))
                raise StoreError(f"{url} is not a sound kvc store, nothing was cloned: {shown}")
            with store.lock():
                replay_head_cache(store, head)
                _pack(store)
        from kedit_vc.fsio import publish_dir

        publish_dir(staging / ".kvc", paths.kvc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Store(root)

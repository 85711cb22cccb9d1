"""The store: a git-backed history of weight deltas for one base model.

``Store`` opens a store (``create`` makes and finds one) and composes its rooms: reading
commits (``commits``), delta storage (``objects``), liveness (``history``), the HEAD
cache (``headcache``), carried state (``carried``) and history rewriting (``rewrite``,
pure). Every write holds the writer lock, writes objects first and moves the branch ref
last, so a crash leaves HEAD at the old or the new commit. Then, still under the lock, it
advances the HEAD cache and packs the new objects (``gitio.pack``); neither can undo or
alter the recorded commit.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import git

from kedit_vc.errors import StoreError
from kedit_vc.fsio import remove_stray_tmp

from . import carried, gitio, rewrite
from .commits import CommitReader
from .history import live_commits
from .layout import MANIFEST_FILE, SQUASHED_REF_PREFIX, STORE_FILE, StorePaths
from .lock import StoreLock
from .manifest import CommitInput, StoreConfig, build_manifest, dumps
from .objects import DeltaObjects, write_patches
from .payload import commit_files, json_from_bytes
from .records import CommitRecord

if TYPE_CHECKING:
    import torch

    from kedit_vc.delta import Delta

log = logging.getLogger(__name__)


class Store:
    """An opened store. Use ``open_store`` / ``init_store`` rather than the constructor."""

    #: Pack the new objects after each write (``gitio.pack``); off only to measure without.
    auto_pack: bool = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        from .headcache import HeadCache

        self.paths = StorePaths(Path(root).resolve())
        try:
            self.repo = gitio.open_repo(self.paths.repo)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise StoreError(f"{self.paths.repo} is not a git repository; is {self.paths.kvc} a kvc store?") from None
        self.paths.tmp.mkdir(exist_ok=True)
        self.paths.objects.mkdir(exist_ok=True)
        self._lock = StoreLock(self.paths.lock)
        self._config: StoreConfig | None = None
        self.objects = DeltaObjects(self.paths)
        self._commits = CommitReader(self.repo, self.objects)
        self.head_cache = HeadCache(self.paths.head_cache, self.paths.tmp, lambda: self.fingerprint,
                                    lambda sha: self._live_pairs(sha))

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the git helper processes gitpython keeps open."""
        self.repo.close()

    # -- the base model ---------------------------------------------------------------

    @property
    def config(self) -> StoreConfig:
        """Base model reference, fingerprint and storage settings (from HEAD's store.json)."""
        if self._config is None:
            files = gitio.read_files(self.repo, self.head())
            if STORE_FILE not in files:
                raise StoreError(f"HEAD of {self.paths.repo} has no {STORE_FILE}; run `kvc fsck`")
            data = json_from_bytes(gitio.blob_bytes(files[STORE_FILE]), STORE_FILE)
            try:
                self._config = StoreConfig.from_json(data)
            except (KeyError, TypeError, ValueError) as error:
                raise StoreError(f"{STORE_FILE} at HEAD is malformed ({error}); run `kvc fsck`") from None
        return self._config

    @property
    def model_ref(self) -> str:
        return self.config.model_ref

    @property
    def fingerprint(self) -> str:
        return self.config.fingerprint

    def check_base(self, fingerprint: str) -> None:
        """Refuse a model whose fingerprint is not the store's base model's."""
        if fingerprint != self.fingerprint:
            raise StoreError(
                f"this store was made for model {self.model_ref!r} (fingerprint {self.fingerprint[:16]}), "
                f"but the loaded model has fingerprint {fingerprint[:16]}; load the store's base model"
            )

    # -- locking ----------------------------------------------------------------------

    @contextmanager
    def lock(self, wait: bool = False, timeout: float | None = None) -> Iterator[None]:
        """Hold the writer lock (re-entrant). Strays of killed writers are swept on entry."""
        first = not self._lock.held
        with self._lock.hold(wait, timeout):
            if first:
                self._sweep()
            yield

    def _sweep(self) -> None:
        remove_stray_tmp(self.paths.tmp)
        for stray in gitio.stray_files(self.repo):  # a killed writer's temporary objects and packs
            stray.unlink(missing_ok=True)

    # -- reading ----------------------------------------------------------------------

    def head(self) -> str:
        sha = gitio.ref_value(self.repo, "HEAD")
        if sha is None:
            raise StoreError(f"{self.paths.repo} has no commits; is it a kvc store?")
        return sha

    def resolve(self, rev: str) -> str:
        """The full sha of ``rev``: HEAD, HEAD~n, a sha prefix, a tag or a branch."""
        sha = None if rev.startswith("-") else gitio.ref_value(self.repo, rev)
        if sha is None:
            raise StoreError(f"unknown revision {rev!r}; try HEAD, HEAD~1, a sha prefix or a tag "
                             "(see `kvc log --oneline`)")
        return sha

    def chain(self, rev: str = "HEAD") -> list[str]:
        """Shas on the first-parent chain from the root to ``rev``, oldest first."""
        return self.repo.git.rev_list("--first-parent", "--reverse", self.resolve(rev)).split()

    def manifest(self, rev: str) -> dict[str, Any]:
        return copy.deepcopy(self._commits.manifest(self.resolve(rev)))

    def read_commit(self, rev: str) -> CommitRecord:
        return self._commits.record(self.resolve(rev))

    def log(self, rev: str = "HEAD", limit: int | None = None) -> list[CommitRecord]:
        """Commits on the first-parent chain, newest first."""
        shas = self.chain(rev)[::-1]
        return [self.read_commit(sha) for sha in shas[:limit]]

    def live_commits(self, rev: str = "HEAD") -> list[str]:
        """Shas whose deltas are in effect at ``rev``, oldest first (see ``history``)."""
        return live_commits((sha, self._commits.manifest(sha)) for sha in self.chain(rev))

    def live_deltas(self, rev: str = "HEAD") -> "list[Delta]":
        """The deltas in effect at ``rev``: HEAD's weights = base + their sum.

        Reads every live commit; to materialise weights, ``live_sum`` is one file at HEAD."""
        return [delta for _, delta in self._live_pairs(rev)]

    def _live_pairs(self, rev: str) -> "list[tuple[str, Delta]]":
        pairs = []
        for sha in self.live_commits(rev):
            record = self.read_commit(sha)  # chain shas are full: no git process; tree cached
            made_for = record.manifest["base"]["fingerprint"]
            if made_for != self.fingerprint:
                raise StoreError(
                    f"commit {sha[:10]} was made for another base model (fingerprint {made_for[:16]}, "
                    f"the store's is {self.fingerprint[:16]})"
                )
            delta = record.delta()
            assert delta is not None
            pairs.append((sha, delta))
        return pairs

    def live_sum(self, rev: str = "HEAD") -> "Delta":
        """The live deltas at ``rev`` summed into one delta: ``rev``'s weights = base + it.

        At HEAD this is one file, the HEAD cache, when it is valid for HEAD; otherwise the
        live deltas are read and summed (and at HEAD the cache is rewritten). Both give the
        same values up to the float rounding ``headcache`` documents; factored parameters
        are bit-identical to ``materialize(live_deltas(rev))``.
        """
        sha = self.resolve(rev)
        state, fresh = self.head_cache.sum_at(sha)
        if fresh and sha == self.head():
            try:  # best effort: another writer may hold the lock, the store may be read-only
                with self.lock():
                    if self.head() == sha:
                        self.head_cache.save(state)
            except (StoreError, OSError) as error:
                log.debug("HEAD cache not written: %s", error)
        return state.delta()

    def live_patches(self, rev: str = "HEAD") -> list[Any]:
        """The non-delta patches in effect at ``rev`` (codebooks...), in commit order: with the
        weights ``base + live_sum(rev)`` they make up the revision (``ops.load.load_edited``)."""
        out: list[Any] = []
        for sha in self.live_commits(rev):
            if self._commits.manifest(sha).get("patches"):
                out += self.read_commit(sha).patches()
        return out

    def rebuild_head_cache(self) -> None:
        """Sum HEAD's live deltas from the history and rewrite the cache (``kvc fsck --repair``)."""
        with self.lock():
            self.head_cache.rebuild(self.head())

    def live_keys(self, rev: str = "HEAD") -> "dict[int, torch.Tensor]":
        """layer -> keys [n, d_in] of all live commits, concatenated (for history-aware editors)."""
        import torch

        per_layer: dict[int, list[torch.Tensor]] = {}
        for sha in self.live_commits(rev):
            for layer, keys in self.read_commit(sha).keys().items():
                per_layer.setdefault(layer, []).append(keys)
        return {layer: torch.cat(parts) for layer, parts in sorted(per_layer.items())}

    def carried_state(self, rev: str = "HEAD") -> "dict[str, torch.Tensor]":
        """name -> the sum of the carried tensors of the commits live at ``rev`` (see ``carried``)."""
        return self._carried_sum(self.live_commits(rev))

    def _carried_sum(self, shas: list[str]) -> "dict[str, torch.Tensor]":
        return carried.summed(self._commits.carried(sha) for sha in shas if self._commits.manifest(sha).get("carried"))

    def squashed_refs(self) -> dict[str, str]:
        """refs/kvc/squashed/<old head> -> sha: history kept reachable after squashes."""
        return gitio.refs_under(self.repo, SQUASHED_REF_PREFIX)

    def fsck(self) -> list[str]:
        from .fsck import fsck

        return fsck(self)

    # -- writing ----------------------------------------------------------------------

    def write_commit(
        self,
        payload: CommitInput,
        *,
        expected_head: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> str:
        """Record one edit, revert, squash or merge; returns the new commit's sha.

        ``expected_head``: refuse if HEAD is no longer this commit (the caller computed
        the delta against it). A revert's delta is the exact inverse of its target's,
        computed here. A squash of (base, tip] becomes one commit whose parent is
        ``base``; commits after ``tip`` are replayed on top of it and the old history is
        kept under ``refs/kvc/squashed/<old head>``. A merge has two parents, HEAD and
        ``payload.merge_parent``; its delta is added to HEAD's like an edit's.
        """
        if payload.op not in ("edit", "revert", "squash", "merge"):
            raise StoreError(f"cannot write a commit with op {payload.op!r}")
        if (payload.op == "merge") != (payload.merge_parent is not None):
            raise StoreError("a merge commit, and only a merge commit, names a second parent (merge_parent)")
        with self.lock(wait, timeout):
            head = self.head()
            if expected_head is not None and head != expected_head:
                raise StoreError(
                    f"HEAD moved from {expected_head[:10]} to {head[:10]} while this command ran; run it again"
                )
            branch = gitio.branch_ref(self.repo)
            if payload.merge_parent is not None:
                payload = dataclasses.replace(payload, merge_parent=self.resolve(payload.merge_parent))
            if payload.op == "squash":
                sha, new_head = self._write_squash(payload, head, branch)
            else:
                if payload.op == "revert":
                    payload = self._revert_input(payload, head)
                elif payload.delta is None:
                    raise StoreError("an edit commit needs a delta")
                sha = new_head = self._write_object(payload, parent=head)
                gitio.set_ref(self.repo, branch, sha, head, self.paths.tmp)
            self._after_write(head, new_head, payload)
            return sha

    def _after_write(self, old_head: str, new_head: str, payload: CommitInput) -> None:
        """Once the ref has moved (the commit is recorded): advance the HEAD cache, then pack.

        Neither can undo or alter the commit, so neither may fail it: a cache not advanced
        is rebuilt at the next checkout, objects not packed are packed by the next write.
        """
        try:
            assert payload.delta is not None
            self.head_cache.advance(old_head, new_head, payload.op, payload.delta, payload.reverts)
        except Exception as error:  # noqa: BLE001 - housekeeping after a recorded commit
            log.warning("kvc: HEAD cache not updated (%s); the next checkout rebuilds it", error)
        if self.auto_pack:
            try:
                gitio.pack(self.repo, keep_fds=self._lock.fds)
            except (OSError, subprocess.CalledProcessError) as error:
                detail = getattr(error, "stderr", b"") or b""
                log.warning("kvc: packing %s failed (%s %s); the next write retries", self.paths.repo, error,
                            detail.decode(errors="replace").strip())

    def _revert_input(self, payload: CommitInput, head: str) -> CommitInput:
        if payload.reverts is None:
            raise StoreError("a revert must name the commit it reverts")
        target = self.resolve(payload.reverts)
        if target not in self.chain(head):
            raise StoreError(
                f"{payload.reverts} ({target[:10]}) is not in the history of HEAD "
                "(was it squashed? see `kvc log`)"
            )
        record = self.read_commit(target)
        delta = record.delta() if record.op != "init" else None
        patches = record.patches()
        if patches and record.op != "revert" and target not in self.live_commits(head):
            raise StoreError(f"{payload.reverts} ({target[:10]}) is already reverted; its patches "
                             f"({', '.join(record.patch_kinds)}) have no inverse to add a second time "
                             "(revert the revert instead to bring it back)")
        return rewrite.revert_input(payload, target, record.manifest, delta, record.carried(), patches)

    def _write_squash(self, payload: CommitInput, head: str, branch: str) -> tuple[str, str]:
        """Write the squash and the replayed commits; returns (squash commit, new HEAD)."""
        if payload.squash_range is None or payload.delta is None:
            raise StoreError("a squash needs a range (base, tip) and the delta that replaces it")
        base, tip = (self.resolve(rev) for rev in payload.squash_range)
        chain = self.chain(head)
        later = chain[chain.index(base) + 1 :] if base in chain else []
        manifests = {sha: self.manifest(sha) for sha in later}
        plan = rewrite.plan_squash(chain, base, tip, manifests, "{}..{}".format(*payload.squash_range))
        range_carried = self._carried_sum(rewrite.squash_carriers(plan, manifests))
        new = self._write_object(rewrite.squash_input(payload, range_carried), parent=base, squash=plan.record())
        renamed, parent = {tip: new}, new
        for sha in plan.after:
            parent = renamed[sha] = self._replay(sha, rewrite.replayed_manifest(manifests[sha], parent, renamed))
        gitio.set_ref(self.repo, plan.kept_at, head, gitio.ref_value(self.repo, plan.kept_at), self.paths.tmp)
        gitio.set_ref(self.repo, branch, parent, head, self.paths.tmp)
        return new, parent

    def _replay(self, sha: str, manifest: Mapping[str, Any]) -> str:
        """Copy commit ``sha`` with ``manifest`` (already re-pointed): same files, same message."""
        files = {name: gitio.blob_bytes(blob) for name, blob in gitio.read_files(self.repo, sha).items()}
        files[MANIFEST_FILE] = dumps(dict(manifest))
        original = self.repo.commit(sha)
        tree = gitio.write_tree(self.repo, files)
        return gitio.write_commit(self.repo, tree, [manifest["parent"]], gitio.message_text(original), original)

    def _write_object(self, payload: CommitInput, parent: str, squash: Mapping[str, Any] | None = None) -> str:
        """Write the commit's files, tree and commit objects (no ref moves); returns its sha."""
        assert payload.delta is not None
        files, info = self.objects.write(payload.delta, self.config.large_delta_bytes)
        patch_files, patch_entries = write_patches(payload.patches)
        manifest = build_manifest(payload, parent=parent, config=self.config, delta=info, squash=squash,
                                  patches=patch_entries)
        store_json = gitio.blob_bytes(gitio.read_files(self.repo, parent)[STORE_FILE])
        tree = gitio.write_tree(self.repo, {**files, **patch_files, **commit_files(payload, manifest, store_json)})
        parents = [parent] if payload.merge_parent is None else [parent, payload.merge_parent]
        return gitio.write_commit(self.repo, tree, parents, payload.message)


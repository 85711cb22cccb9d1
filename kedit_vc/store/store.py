"""The store: a git-backed history of weight deltas for one base model.

``init_store`` creates one, ``open_store`` finds one (searching upward like git), and
``Store`` reads and writes it. Every write holds the writer lock, writes objects first
and moves the branch ref last, so a crash leaves HEAD at the old or the new commit.
Then, still under the lock, it advances the HEAD cache (``headcache``) and packs the new
objects (``gitio.pack``); neither can undo or alter the recorded commit.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import git

from kedit_vc.errors import StoreError

from . import gitio
from kedit_vc.fsio import atomic_write_bytes, publish_dir, remove_stray_tmp
from .history import live_commits
from .layout import (
    DELTA_FILE,
    DELTA_POINTER_FILE,
    KEYS_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    PLAN_FILE,
    SPEC_FILE,
    SQUASHED_REF_PREFIX,
    STORE_FILE,
    StorePaths,
    find_root,
)
from .lock import StoreLock
from .manifest import DEFAULT_LARGE_DELTA_BYTES, CommitInput, StoreConfig, build_manifest, dumps
from .payload import json_from_bytes, keys_from_bytes, keys_to_bytes
from .records import CommitRecord

if TYPE_CHECKING:
    import torch

    from kedit_vc.delta import Delta

    from .headcache import HeadSum

log = logging.getLogger(__name__)

GITIGNORE = "# kvc store: its history lives in .kvc/repo.git, not in this project's repository\n*\n"


class Store:
    """An opened store. Use ``open_store`` / ``init_store`` rather than the constructor."""

    #: Pack the new objects after each write (``gitio.pack``); off only to measure without.
    auto_pack: bool = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.paths = StorePaths(Path(root).resolve())
        try:
            self.repo = gitio.open_repo(self.paths.repo)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise StoreError(f"{self.paths.repo} is not a git repository; is {self.paths.kvc} a kvc store?") from None
        self.paths.tmp.mkdir(exist_ok=True)
        self.paths.objects.mkdir(exist_ok=True)
        self._lock = StoreLock(self.paths.lock)
        self._config: StoreConfig | None = None
        # Per-commit reads, keyed by full commit sha (commits are immutable, so these
        # never go stale): the tree's blobs by name, and the parsed manifest.
        self._files_cache: dict[str, dict[str, git.Blob]] = {}
        self._manifest_cache: dict[str, dict[str, Any]] = {}
        # The HEAD cache last read or written (valid for its own key, whatever HEAD is now).
        self._head_sum: "HeadSum | None" = None

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
        for stray in (self.paths.repo / "objects").glob("obj*"):  # gitdb's temporary objects
            if stray.is_file():
                stray.unlink(missing_ok=True)
        for stray in gitio.pack_temporaries(self.repo):  # an interrupted repack's (it held this lock)
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
            raise StoreError(f"unknown revision {rev!r}; try HEAD, HEAD~1, a sha prefix or a tag (see `kvc log --oneline`)")
        return sha

    def chain(self, rev: str = "HEAD") -> list[str]:
        """Shas on the first-parent chain from the root to ``rev``, oldest first."""
        return self.repo.git.rev_list("--first-parent", "--reverse", self.resolve(rev)).split()

    def manifest(self, rev: str) -> dict[str, Any]:
        return copy.deepcopy(self._manifest_of(self.resolve(rev)))

    _CACHE_LIMIT = 20_000

    def _files_of(self, sha: str) -> dict[str, git.Blob]:
        """The files of commit ``sha`` (a full sha), its tree read once per store."""
        files = self._files_cache.get(sha)
        if files is None:
            if len(self._files_cache) >= self._CACHE_LIMIT:
                self._files_cache.clear()
            files = self._files_cache[sha] = gitio.read_files(self.repo, sha)
        return files

    def _manifest_of(self, sha: str) -> dict[str, Any]:
        """The parsed manifest of commit ``sha`` (a full sha), parsed once; do not mutate it."""
        manifest = self._manifest_cache.get(sha)
        if manifest is None:
            files = self._files_of(sha)
            if MANIFEST_FILE not in files:
                raise StoreError(f"commit {sha[:10]} has no {MANIFEST_FILE}; it was not written by kvc")
            manifest = json_from_bytes(gitio.blob_bytes(files[MANIFEST_FILE]), f"{MANIFEST_FILE} of {sha[:10]}")
            if len(self._manifest_cache) >= self._CACHE_LIMIT:
                self._manifest_cache.clear()
            self._manifest_cache[sha] = manifest
        return manifest

    def read_commit(self, rev: str) -> CommitRecord:
        sha = self.resolve(rev)
        commit = self.repo.commit(sha)
        files = dict(self._files_of(sha))
        manifest = copy.deepcopy(self._manifest_of(sha))

        def text(name: str) -> str | None:
            return gitio.blob_bytes(files[name]).decode("utf-8") if name in files else None

        def parsed(name: str) -> Any:
            return json_from_bytes(gitio.blob_bytes(files[name]), f"{name} of {sha[:10]}") if name in files else None

        return CommitRecord(
            sha=sha,
            parents=tuple(p.hexsha for p in commit.parents),
            message=commit.message.rstrip("\n"),
            time=commit.committed_date,
            author=f"{commit.author.name} <{commit.author.email}>",
            manifest=manifest,
            spec_text=text(SPEC_FILE),
            plan=parsed(PLAN_FILE),
            metrics=parsed(METRICS_FILE) or {},
            files=tuple(sorted(files)),
            load_delta=lambda: self._load_delta(sha, files, manifest),
            load_keys=lambda: keys_from_bytes(gitio.blob_bytes(files[KEYS_FILE]), f"{KEYS_FILE} of {sha[:10]}")
            if KEYS_FILE in files
            else {},
        )

    def _load_delta(self, sha: str, files: Mapping[str, git.Blob], manifest: Mapping[str, Any]) -> "Delta | None":
        from kedit_vc.delta import Delta

        info = manifest.get("delta")
        if info is None:
            return None
        source = f"the delta of commit {sha[:10]}"
        if info["storage"] == "object":
            path = self.paths.object_path(info["hash"])
            if not path.is_file():
                raise StoreError(
                    f"{source} is missing from {self.paths.objects} (large deltas live beside git, not in it: "
                    f"copy the objects folder from where the commit was made)"
                )
            data = path.read_bytes()
        elif DELTA_FILE in files:
            data = gitio.blob_bytes(files[DELTA_FILE])
        else:
            raise StoreError(f"{source} is missing: commit {sha[:10]} has no {DELTA_FILE}")
        return Delta.from_bytes(data, expected_hash=info["hash"], source=source)

    def log(self, rev: str = "HEAD", limit: int | None = None) -> list[CommitRecord]:
        """Commits on the first-parent chain, newest first."""
        shas = self.chain(rev)[::-1]
        return [self.read_commit(sha) for sha in shas[:limit]]

    def live_commits(self, rev: str = "HEAD") -> list[str]:
        """Shas whose deltas are in effect at ``rev``, oldest first (see ``history``)."""
        return live_commits((sha, self._manifest_of(sha)) for sha in self.chain(rev))

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
        from . import headcache

        sha = self.resolve(rev)
        state = self._head_sum_for(sha)
        if state is None:
            state = headcache.build(sha, self.fingerprint, self._live_pairs(sha))
            if sha == self.head():
                self._save_head_sum(state)
        return state.delta()

    def _head_sum_for(self, sha: str) -> "HeadSum | None":
        """The HEAD cache if it sums commit ``sha`` for this base model, else None."""
        from . import headcache

        state = self._head_sum
        if state is None or state.commit != sha:
            state = headcache.read(self.paths.head_cache)
        if state is None or state.commit != sha or state.fingerprint != self.fingerprint:
            return None
        self._head_sum = state
        return state

    def _save_head_sum(self, state: "HeadSum") -> None:
        """Write the HEAD cache if HEAD is still its key and the lock is free (best effort)."""
        from . import headcache

        self._head_sum = state
        try:
            with self.lock():
                if self.head() == state.commit:
                    headcache.write(self.paths.head_cache, state, self.paths.tmp)
        except (StoreError, OSError) as error:  # another writer, a read-only store...
            log.debug("HEAD cache not written: %s", error)

    def rebuild_head_cache(self) -> None:
        """Sum HEAD's live deltas from the history and rewrite the cache (``kvc fsck --repair``)."""
        from . import headcache

        with self.lock():
            head = self.head()
            state = headcache.build(head, self.fingerprint, self._live_pairs(head))
            headcache.write(self.paths.head_cache, state, self.paths.tmp)
            self._head_sum = state

    def live_keys(self, rev: str = "HEAD") -> "dict[int, torch.Tensor]":
        """layer -> keys [n, d_in] of all live commits, concatenated (for history-aware editors)."""
        import torch

        per_layer: dict[int, list[torch.Tensor]] = {}
        for sha in self.live_commits(rev):
            for layer, keys in self.read_commit(sha).keys().items():
                per_layer.setdefault(layer, []).append(keys)
        return {layer: torch.cat(parts) for layer, parts in sorted(per_layer.items())}

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
        """Record one edit, revert or squash; returns the new commit's sha.

        ``expected_head``: refuse if HEAD is no longer this commit (the caller computed
        the delta against it). A revert's delta is the exact inverse of its target's,
        computed here. A squash of (base, tip] becomes one commit whose parent is
        ``base``; commits after ``tip`` are replayed on top of it and the old history is
        kept under ``refs/kvc/squashed/<old head>``.
        """
        if payload.op not in ("edit", "revert", "squash"):
            raise StoreError(f"cannot write a commit with op {payload.op!r}")
        with self.lock(wait, timeout):
            head = self.head()
            if expected_head is not None and head != expected_head:
                raise StoreError(
                    f"HEAD moved from {expected_head[:10]} to {head[:10]} while this command ran; run it again"
                )
            branch = gitio.branch_ref(self.repo)
            if payload.op == "squash":
                sha, new_head = self._write_squash(payload, head, branch)
            else:
                if payload.op == "revert":
                    payload = self._revert_payload(payload, head)
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
            self._advance_head_sum(old_head, new_head, payload)
        except Exception as error:  # noqa: BLE001 - housekeeping after a recorded commit
            log.warning("kvc: HEAD cache not updated (%s); the next checkout rebuilds it", error)
        if self.auto_pack:
            try:
                gitio.pack(self.repo, keep_fds=self._lock.fds)
            except (OSError, subprocess.CalledProcessError) as error:
                detail = getattr(error, "stderr", b"") or b""
                log.warning("kvc: packing %s failed (%s %s); the next write retries", self.paths.repo, error,
                            detail.decode(errors="replace").strip())

    def _advance_head_sum(self, old_head: str, new_head: str, payload: CommitInput) -> None:
        """The HEAD cache for ``new_head``: the one for ``old_head`` plus this write, or rebuilt."""
        from . import headcache

        state = self._head_sum_for(old_head)
        assert payload.delta is not None
        if state is None or payload.op == "squash":
            state = headcache.build(new_head, self.fingerprint, self._live_pairs(new_head))
        elif payload.op == "revert" and payload.reverts in state.live:
            state = headcache.reverted(state, new_head, payload.reverts, payload.delta)
        else:
            state = headcache.added(state, new_head, payload.delta)
        headcache.write(self.paths.head_cache, state, self.paths.tmp)
        self._head_sum = state

    def _revert_payload(self, payload: CommitInput, head: str) -> CommitInput:
        if payload.reverts is None:
            raise StoreError("a revert must name the commit it reverts")
        target = self.resolve(payload.reverts)
        if target not in self.chain(head):
            raise StoreError(
                f"{payload.reverts} ({target[:10]}) is not in the history of HEAD "
                "(was it squashed? see `kvc log`)"
            )
        record = self.read_commit(target)
        if record.op == "init":
            raise StoreError("the initial commit has no delta to revert")
        inverse = record.delta().inverse()  # type: ignore[union-attr]
        if payload.delta is not None and payload.delta.content_hash() != inverse.content_hash():
            raise StoreError("a revert's delta must be the exact inverse of its target's; pass none")
        return replace(payload, delta=inverse, reverts=target, edit_ids=payload.edit_ids or record.edit_ids)

    def _write_squash(self, payload: CommitInput, head: str, branch: str) -> tuple[str, str]:
        """Write the squash and the replayed commits; returns (squash commit, new HEAD)."""
        if payload.squash_range is None or payload.delta is None:
            raise StoreError("a squash needs a range (base, tip) and the delta that replaces it")
        base, tip = (self.resolve(rev) for rev in payload.squash_range)
        chain = self.chain(head)
        if base not in chain or tip not in chain or chain.index(base) >= chain.index(tip):
            raise StoreError(f"{payload.squash_range[0]}..{payload.squash_range[1]} is not a range of HEAD's history")
        inside = chain[chain.index(base) + 1 : chain.index(tip) + 1]
        after = chain[chain.index(tip) + 1 :]
        manifests = {sha: self.manifest(sha) for sha in inside + after}
        for sha in inside:
            target = manifests[sha].get("reverts")
            if target and target not in inside:
                raise StoreError(
                    f"{sha[:10]} in the range reverts {target[:10]}, which is before it; start the range before {target[:10]}"
                )
        for sha in after:
            if manifests[sha].get("reverts") in inside:
                raise StoreError(f"{sha[:10]}, after the range, reverts a commit inside it; extend the range to {sha[:10]}")
        kept = SQUASHED_REF_PREFIX + head
        squash = {"base": base, "tip": tip, "commits": inside, "kept_at": kept}
        new = self._write_object(payload, parent=base, squash=squash)
        renamed = {tip: new}
        for sha in after:
            renamed[sha] = self._replay(sha, manifests[sha], renamed[chain[chain.index(sha) - 1]], renamed)
        gitio.set_ref(self.repo, kept, head, gitio.ref_value(self.repo, kept), self.paths.tmp)
        gitio.set_ref(self.repo, branch, renamed[chain[-1]], head, self.paths.tmp)
        return new, renamed[chain[-1]]

    def _replay(self, sha: str, manifest: dict[str, Any], parent: str, renamed: Mapping[str, str]) -> str:
        """Copy a commit onto a new parent: same files, manifest re-pointed."""
        files = {name: gitio.blob_bytes(blob) for name, blob in gitio.read_files(self.repo, sha).items()}
        manifest = dict(manifest, parent=parent, reverts=renamed.get(manifest.get("reverts"), manifest.get("reverts")))
        files[MANIFEST_FILE] = dumps(manifest)
        original = self.repo.commit(sha)
        return gitio.write_commit(self.repo, gitio.write_tree(self.repo, files), [parent], original.message, original)

    def _write_object(self, payload: CommitInput, parent: str, squash: Mapping[str, Any] | None = None) -> str:
        """Write the commit's files, tree and commit objects (no ref moves); returns its sha."""
        delta = payload.delta
        assert delta is not None
        data = delta.to_bytes()
        content = delta.content_hash()
        files: dict[str, bytes] = {}
        limit = self.config.large_delta_bytes
        if limit is not None and len(data) > limit and any(u.kind == "dense" for u in delta.updates.values()):
            path = self.paths.object_path(content)
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(path, data, self.paths.tmp)
            storage = "object"
            files[DELTA_POINTER_FILE] = dumps({"format": "kvc-delta-pointer", "hash": content, "bytes": len(data)})
        else:
            storage = "git"
            files[DELTA_FILE] = data
        info = {"hash": content, "storage": storage, "bytes": len(data)}
        manifest = build_manifest(payload, parent=parent, config=self.config, delta=info, squash=squash)
        files[MANIFEST_FILE] = dumps(manifest)
        files[STORE_FILE] = gitio.blob_bytes(gitio.read_files(self.repo, parent)[STORE_FILE])
        files[METRICS_FILE] = dumps(dict(payload.metrics))
        if payload.spec_text is not None:
            files[SPEC_FILE] = payload.spec_text.encode("utf-8")
        if payload.plan is not None:
            files[PLAN_FILE] = dumps(dict(payload.plan))
        if payload.keys:
            files[KEYS_FILE] = keys_to_bytes(payload.keys)
        tree = gitio.write_tree(self.repo, files)
        return gitio.write_commit(self.repo, tree, [parent], payload.message)


def open_store(path: str | os.PathLike[str] | None = None) -> Store:
    """The store of the project at or above ``path`` (default: the working directory)."""
    root = find_root(path)
    if root is None:
        where = Path(path if path is not None else os.getcwd()).resolve()
        raise StoreError(f"no kvc store in {where} or any parent directory; create one with `kvc init --model REF`")
    return Store(root)


def init_store(
    path: str | os.PathLike[str],
    model_ref: str,
    fingerprint: str,
    *,
    large_delta_bytes: int | None = DEFAULT_LARGE_DELTA_BYTES,
) -> Store:
    """Create ``<path>/.kvc`` recording the base model (reference + fingerprint, no weights).

    Built in a staging directory and renamed into place, so an interrupted init leaves
    no half-made store.
    """
    root = Path(path).resolve()
    root.mkdir(parents=True, exist_ok=True)
    paths = StorePaths(root)
    if paths.kvc.exists():
        raise StoreError(f"{paths.kvc} already exists; this directory has a kvc store")
    staging = root / f".kvc.init-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        git.Repo.init(staging / "repo.git", bare=True).close()
        repo = gitio.open_repo(staging / "repo.git")
        repo.git.symbolic_ref("HEAD", "refs/heads/main")
        for folder in ("objects", "tmp"):
            (staging / folder).mkdir()
        (staging / ".gitignore").write_text(GITIGNORE)
        config = StoreConfig(model_ref, fingerprint, large_delta_bytes)
        manifest = build_manifest(CommitInput("init", op="init"), parent=None, config=config, delta=None)
        tree = gitio.write_tree(repo, {STORE_FILE: dumps(config.to_json()), MANIFEST_FILE: dumps(manifest)})
        repo.git.update_ref("refs/heads/main", gitio.write_commit(repo, tree, [], f"kvc init: {model_ref}"))
        try:
            gitio.pack(repo)
        except (OSError, subprocess.CalledProcessError) as error:  # loose objects work too
            log.warning("kvc: packing the new store failed (%s)", error)
        repo.close()
        publish_dir(staging, paths.kvc)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Store(root)

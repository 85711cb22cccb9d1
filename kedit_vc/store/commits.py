"""Reading commits: each commit's tree and manifest read once, records built on demand.

Commits are immutable, so what is cached here (keyed by full sha) never goes stale; the
caches are simply cleared when they grow past ``CACHE_LIMIT`` entries.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import git

from kedit_vc.errors import StoreError

from . import gitio
from .carried import carried_from_bytes
from .layout import CARRIED_FILE, KEYS_FILE, MANIFEST_FILE, METRICS_FILE, PLAN_FILE, SPEC_FILE
from .objects import DeltaObjects, load_patches
from .payload import json_from_bytes, keys_from_bytes
from .records import CommitRecord

if TYPE_CHECKING:
    import torch

CACHE_LIMIT = 20_000


class CommitReader:
    """Reads the commits of ``repo`` (deltas through ``objects``)."""

    def __init__(self, repo: git.Repo, objects: DeltaObjects) -> None:
        self.repo = repo
        self.objects = objects
        self._files: dict[str, dict[str, git.Blob]] = {}
        self._manifests: dict[str, dict[str, Any]] = {}

    def files(self, sha: str) -> dict[str, git.Blob]:
        """The files of commit ``sha`` (a full sha), its tree read once."""
        files = self._files.get(sha)
        if files is None:
            if len(self._files) >= CACHE_LIMIT:
                self._files.clear()
            files = self._files[sha] = gitio.read_files(self.repo, sha)
        return files

    def manifest(self, sha: str) -> dict[str, Any]:
        """The parsed manifest of commit ``sha`` (a full sha), parsed once; do not mutate it."""
        manifest = self._manifests.get(sha)
        if manifest is None:
            files = self.files(sha)
            if MANIFEST_FILE not in files:
                raise StoreError(f"commit {sha[:10]} has no {MANIFEST_FILE}; it was not written by kvc")
            manifest = json_from_bytes(gitio.blob_bytes(files[MANIFEST_FILE]), f"{MANIFEST_FILE} of {sha[:10]}")
            if len(self._manifests) >= CACHE_LIMIT:
                self._manifests.clear()
            self._manifests[sha] = manifest
        return manifest

    def carried(self, sha: str) -> "dict[str, torch.Tensor]":
        """Commit ``sha``'s carried tensors, checked against its manifest ({} when it has none)."""
        entry = self.manifest(sha).get("carried")
        files = self.files(sha)
        if not entry and CARRIED_FILE not in files:
            return {}
        source = f"{CARRIED_FILE} of {sha[:10]}"
        if CARRIED_FILE not in files:
            raise StoreError(f"{source} is missing though the manifest lists carried tensors")
        return carried_from_bytes(gitio.blob_bytes(files[CARRIED_FILE]), source, entry or {})

    def record(self, sha: str) -> CommitRecord:
        """The commit ``sha`` (a full sha); its delta, keys and carried tensors load on demand."""
        commit = self.repo.commit(sha)
        files = dict(self.files(sha))
        manifest = copy.deepcopy(self.manifest(sha))

        def raw(name: str) -> bytes | None:
            return gitio.blob_bytes(files[name]) if name in files else None

        def text(name: str) -> str | None:
            data = raw(name)
            return data.decode("utf-8") if data is not None else None

        def parsed(name: str) -> Any:
            data = raw(name)
            return json_from_bytes(data, f"{name} of {sha[:10]}") if data is not None else None

        return CommitRecord(
            sha=sha,
            parents=tuple(p.hexsha for p in commit.parents),
            message=gitio.message_text(commit).rstrip("\n"),
            time=commit.committed_date,
            author=f"{commit.author.name} <{commit.author.email}>",
            manifest=manifest,
            spec_text=text(SPEC_FILE),
            plan=parsed(PLAN_FILE),
            metrics=parsed(METRICS_FILE) or {},
            files=tuple(sorted(files)),
            load_delta=lambda: self.objects.load(sha, raw, manifest),
            load_keys=lambda: keys_from_bytes(gitio.blob_bytes(files[KEYS_FILE]), f"{KEYS_FILE} of {sha[:10]}")
            if KEYS_FILE in files
            else {},
            load_carried=lambda: self.carried(sha),
            load_patches=lambda: load_patches(sha, raw, manifest),
        )

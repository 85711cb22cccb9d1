"""Where things live in a store, and how a store is found from a working directory.

::

    <project>/.kvc/
        .gitignore      "*": the project's own git repository ignores the store
        repo.git/       a bare git repository: one commit per edit, revert or squash
        objects/        content-addressed large dense deltas (ab/<sha256>.safetensors)
        cache/          head.safetensors: HEAD's live deltas summed (see ``headcache``; rebuildable)
        tmp/            temporary files of writes in progress
        lock            held (flock) by the one process writing

Refs besides the branches: ``refs/kvc/squashed/<old head>`` (history a squash replaced),
``refs/remotes/<remote>/<branch>`` (what a remote had at the last pull), and, only while
a pull runs, ``refs/kvc/incoming/<remote>/`` (received, not yet verified; see ``remotes``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KVC_DIR = ".kvc"

# File names inside each commit's tree.
STORE_FILE = "store.json"
MANIFEST_FILE = "manifest.json"
SPEC_FILE = "spec.kedit"
PLAN_FILE = "plan.json"
DELTA_FILE = "delta.safetensors"
DELTA_POINTER_FILE = "delta.pointer.json"
METRICS_FILE = "metrics.json"
KEYS_FILE = "keys.safetensors"
CARRIED_FILE = "carried.safetensors"

SQUASHED_REF_PREFIX = "refs/kvc/squashed/"


def patch_file(index: int, kind: str) -> str:
    """The tree file of a commit's ``index``-th non-delta patch (see ``objects``)."""
    return f"patch.{index}.{kind}.safetensors"


@dataclass(frozen=True)
class StorePaths:
    """The paths of the store whose project directory is ``root``."""

    root: Path

    @property
    def kvc(self) -> Path:
        return self.root / KVC_DIR

    @property
    def repo(self) -> Path:
        return self.kvc / "repo.git"

    @property
    def objects(self) -> Path:
        return self.kvc / "objects"

    @property
    def head_cache(self) -> Path:
        return self.kvc / "cache" / "head.safetensors"

    @property
    def tmp(self) -> Path:
        return self.kvc / "tmp"

    @property
    def lock(self) -> Path:
        return self.kvc / "lock"

    def object_path(self, content_hash: str) -> Path:
        return self.objects / content_hash[:2] / f"{content_hash}.safetensors"


def find_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest directory at or above ``start`` (default: cwd) holding a store."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / KVC_DIR / "repo.git").is_dir():
            return directory
    return None

"""Creating a store (``kvc init``) and finding one from a working directory."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import git

from kedit_vc.errors import StoreError
from kedit_vc.fsio import publish_dir

from . import gitio
from .layout import MANIFEST_FILE, STORE_FILE, StorePaths, find_root
from .manifest import DEFAULT_LARGE_DELTA_BYTES, CommitInput, StoreConfig, build_manifest, dumps
from .store import Store

log = logging.getLogger(__name__)

GITIGNORE = "# kvc store: its history lives in .kvc/repo.git, not in this project's repository\n*\n"


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

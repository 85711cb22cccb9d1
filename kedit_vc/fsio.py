"""Crash-safe file writes: a reader sees the old file or the new one, never a torn one.

The data goes to a temporary file in the target's directory (same filesystem), is
flushed to disk, and is renamed over the target; the directory is synced so the rename
itself survives a power cut. A kill at any moment leaves at most a stray temporary file.
Standard library only, and no kedit_vc imports: every room (the store, the delta IO,
caches, the CLI's output files) writes through here.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TMP_SUFFIX = ".kvc-tmp"


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Persist a rename or file creation in ``directory`` (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(
    path: str | os.PathLike[str], tmp_dir: str | os.PathLike[str] | None = None, *, sync: bool = True
) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to (for writers that take a
    file name: safetensors, matplotlib); on a clean exit it replaces ``path`` atomically.

    ``tmp_dir`` (default: the target's directory) must be on the same filesystem; the
    store passes its own ``tmp/`` so that strays of killed writers collect in one place.
    ``sync=False`` skips the fsyncs, for files whose readers detect a torn one (caches).
    An existing target's permission bits are kept (a temporary file is created 0600).
    """
    target = Path(path)
    directory = target.parent if tmp_dir is None else Path(tmp_dir)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=directory)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if sync:
            _fsync_file(tmp)
        try:
            os.chmod(tmp, target.stat().st_mode & 0o777)
        except FileNotFoundError:
            pass
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(target.parent)


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, tmp_dir: str | os.PathLike[str] | None = None, *, sync: bool = True
) -> None:
    """Replace ``path`` with ``data`` atomically (temporary file + fsync + rename; see ``atomic_path``)."""
    with atomic_path(path, tmp_dir, sync=sync) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, tmp_dir: str | os.PathLike[str] | None = None, *, sync: bool = True
) -> None:
    """``atomic_write_bytes`` of ``text`` in UTF-8 (newlines written as given)."""
    atomic_write_bytes(path, text.encode("utf-8"), tmp_dir, sync=sync)


def publish_dir(staging: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename a fully written ``staging`` folder to ``target`` (an absent or empty folder),
    then sync the parent so the rename survives a power cut. Files inside are not synced:
    the folders published this way are caches and exports, checked or rebuilt on use."""
    os.replace(staging, target)
    fsync_dir(Path(target).parent)


def remove_stray_tmp(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files left in ``directory`` by killed writers; returns them.

    Only safe while no writer can be mid-write there (the store holds its lock).
    """
    removed = []
    for path in Path(directory).glob(f".*{TMP_SUFFIX}"):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed

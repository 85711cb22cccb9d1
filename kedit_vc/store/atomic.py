"""Crash-safe file writes: a reader sees the old file or the new one, never a torn one.

The data goes to a temporary file in the target's directory (same filesystem), is
flushed to disk, and is renamed over the target; the directory is synced so the rename
itself survives a power cut. A kill at any moment leaves at most a stray temporary file.
Standard library only, so light modules (the store, the delta IO) can share it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, tmp_dir: str | os.PathLike[str] | None = None, *, sync: bool = True
) -> None:
    """Replace ``path`` with ``data`` atomically (temporary file + fsync + rename).

    ``tmp_dir`` (default: the target's directory) must be on the same filesystem; the
    store passes its own ``tmp/`` so that strays of killed writers collect in one place.
    ``sync=False`` skips the fsyncs, for files whose readers detect a torn one (caches).
    """
    target = Path(path)
    directory = target.parent if tmp_dir is None else tmp_dir
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync:
        fsync_dir(target.parent)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, tmp_dir: str | os.PathLike[str] | None = None
) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), tmp_dir)


def remove_stray_tmp(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files left in ``directory`` by killed writers; returns them.

    Only safe while holding the store lock (no writer can be mid-write).
    """
    removed = []
    for path in Path(directory).glob(f".*{TMP_SUFFIX}"):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed

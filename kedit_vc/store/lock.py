"""The writer lock: one process writes a store at a time.

An advisory ``flock`` on ``.kvc/lock``: the kernel drops it when its holder exits or is
killed, so a crashed writer never leaves a stale lock behind. The holder writes its pid,
host and command into the file so that a refused writer can say who is in the way.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from kedit_vc.errors import StoreError


def _holder_info() -> bytes:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:200],
    }
    return json.dumps(info, sort_keys=True).encode()


def _describe_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "another process"
    return (f"process {info['pid']} on {info.get('host', '?')} "
            f"(since {info.get('since', '?')}: {info.get('command', '?')})")


class StoreLock:
    """A re-entrant (within one object) exclusive lock on a store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._depth = 0

    @property
    def held(self) -> bool:
        return self._depth > 0

    @property
    def fds(self) -> tuple[int, ...]:
        """The locked descriptor, for a child process that must keep the lock until it exits
        (``subprocess.run(..., pass_fds=lock.fds)``): the flock belongs to the open file,
        so a killed holder's child still holds it."""
        return (self._fd,) if self._fd is not None else ()

    def acquire(self, wait: bool = False, timeout: float | None = None, poll: float = 0.05) -> None:
        """Take the lock; without ``wait`` fail at once if taken, else retry until ``timeout``."""
        if self._depth:
            self._depth += 1
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait or (deadline is not None and time.monotonic() >= deadline):
                    os.close(fd)
                    waited = f" after waiting {timeout:g}s" if wait else ""
                    hint = "" if wait else "; pass --wait to wait for it"
                    raise StoreError(
                        f"the store {self.path.parent} is being written by {_describe_holder(self.path)}{waited}{hint}"
                    ) from None
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_info(), 0)
        self._fd, self._depth = fd, 1

    def release(self) -> None:
        if not self._depth:
            raise RuntimeError("release of a lock that is not held")
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @contextmanager
    def hold(self, wait: bool = False, timeout: float | None = None) -> Iterator[None]:
        self.acquire(wait, timeout)
        try:
            yield
        finally:
            self.release()

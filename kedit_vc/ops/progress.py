"""Progress for long operations: a rich status line per stage, silent when disabled.

Editors draw their own bars (optimisation steps, statistics); this only names the stage
around them so a user sees where a minute goes.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


class Stages:
    """``with stages.stage("scoring"):`` shows a spinner on stderr while the block runs."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()

    @contextmanager
    def stage(self, label: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        from rich.console import Console

        with Console(stderr=True).status(label):
            yield

    def track(self, items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
        """Iterate ``items`` under a transient progress bar."""
        if not self.enabled:
            yield from items
            return
        from rich.progress import track

        yield from track(items, description=label, total=total, transient=True, console=None)

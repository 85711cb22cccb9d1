"""A progress line for optimisation loops (rich), silent when progress is off."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def step_reporter(label: str, total: int, enabled: bool) -> Iterator[Callable[[int, float], None] | None]:
    """Yield ``report(step, loss)`` that advances a transient bar, or None when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn

    with Progress(TextColumn(label), BarColumn(), TextColumn("step {task.completed}/{task.total}"),
                  TextColumn("nll {task.fields[loss]:.3f}"), transient=True) as bar:
        task = bar.add_task(label, total=total, loss=float("nan"))

        def report(step: int, loss: float) -> None:
            bar.update(task, completed=step + 1, loss=loss)
        yield report

"""Errors of the composed operations: a refused commit and a contradicting edit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from kedit_vc.errors import KvcError

if TYPE_CHECKING:
    from kedit_vc.compiler.plan import EditRequest

    from .commit import CommitResult
    from .history import LiveEdit


class CommitRefused(KvcError):
    """The gate failed: nothing was written. ``result`` holds the metrics that fell short."""

    def __init__(self, result: "CommitResult") -> None:
        self.result = result
        assert result.gate is not None
        super().__init__(f"commit refused, nothing written: {result.gate.summary()}\n"
                         f"{result.gate.table(only_failed=True)}")


class ConflictError(KvcError):
    """A new edit rewrites a fact that a live edit already rewrote (same subject and prompt)."""

    def __init__(self, pairs: "Sequence[tuple[LiveEdit, EditRequest]]") -> None:
        self.pairs = tuple(pairs)
        lines = [
            f"edit {new.subject!r} ({new.prompt!r} -> {new.target_new!r}) contradicts live edit {old.request.edit_id} "
            f"of commit {old.sha[:10]} (-> {old.request.target_new!r})"
            for old, new in self.pairs
        ]
        super().__init__("; ".join(lines) + "; pass --supersede to replace it, or revert that commit first")

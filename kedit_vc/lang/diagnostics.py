"""Errors people can read: ``file:line:col: error: message``, the line, and a caret.

Checks collect ``Diagnostic`` values instead of raising, so one run reports every
problem it can find; ``SpecError`` carries them all out through the CLI (exit 2).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Mapping

from kedit_vc.errors import KvcError

from .ir import Span


@dataclass(frozen=True)
class Diagnostic:
    span: Span | None
    message: str

    def render(self, sources: Mapping[str, str]) -> str:
        """The error line, then the source line with a caret under the span."""
        if self.span is None:
            return f"error: {self.message}"
        span = self.span
        head = f"{span.file}:{span.line}:{span.column}: error: {self.message}"
        text = sources.get(span.file)
        if text is None:
            return head
        lines = text.split("\n")
        if not 1 <= span.line <= len(lines):
            return head
        line = lines[span.line - 1].rstrip("\r")
        start = max(span.column - 1, 0)
        width = 1
        if span.end_line == span.line and span.end_column > span.column:
            width = span.end_column - span.column
        width = max(1, min(width, max(len(line) - start, 1)))
        # Reuse the line's own tabs so the caret lines up in any editor.
        pad = "".join(c if c == "\t" else " " for c in line[:start])
        gutter = f"{span.line:>5} | "
        blank = " " * (len(gutter) - 2) + "| "
        return f"{head}\n{gutter}{line}\n{blank}{pad}^{'~' * (width - 1)}"


class SpecError(KvcError):
    """One or more problems in a spec; ``str()`` is the full, rendered report."""

    exit_code = 2
    label = ""  # each rendered diagnostic already reads "file:line:col: error: ..."

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: Mapping[str, str] | None = None) -> None:
        self.diagnostics = tuple(diagnostics)
        self.sources = dict(sources or {})
        super().__init__(self.report())

    def report(self) -> str:
        lines = [d.render(self.sources) for d in self.diagnostics]
        count = len(self.diagnostics)
        if count > 1:
            lines.append(f"{count} errors")
        return "\n".join(lines)

    @property
    def messages(self) -> list[str]:
        """The bare messages, for tests and tools."""
        return [d.message for d in self.diagnostics]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""

"""The .kedit language: parse, check and format edit specs (no torch here).

``load(path)`` gives a checked ``Program`` or raises ``SpecError`` listing every
problem as ``file:line:col: error: ...``; ``format_spec`` is ``kvc fmt``.
"""

from __future__ import annotations

from .diagnostics import Diagnostic, SpecError
from .format import format_items, format_spec
from .ids import edit_id
from .loader import Program, ScopedEdit, load, load_text
from .metrics import METRICS
from .parse import parse_source, parse_text

__all__ = [
    "Diagnostic", "METRICS", "Program", "ScopedEdit", "SpecError", "edit_id", "format_items",
    "format_spec", "load", "load_text", "parse_source", "parse_text",
]

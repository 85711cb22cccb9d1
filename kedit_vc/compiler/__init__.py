"""Spec -> plan: the checked IR lowered into editor calls and concrete probes."""

from __future__ import annotations

import os

from kedit_vc.lang import load, load_text

from .lower import DEFAULT_METHOD, lower
from .plan import Plan


def compile_file(path: str | os.PathLike[str]) -> Plan:
    """Load, check and lower ``path`` (raises ``SpecError`` on any problem)."""
    return lower(load(path))


def compile_text(text: str, path: str = "<spec>", directory: str | os.PathLike[str] = ".") -> Plan:
    return lower(load_text(text, path, directory))


__all__ = ["DEFAULT_METHOD", "Plan", "compile_file", "compile_text", "lower"]

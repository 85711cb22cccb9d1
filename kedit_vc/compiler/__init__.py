"""Spec -> plan: the checked IR lowered into editor calls and concrete probes."""

from __future__ import annotations

import os

from kedit_vc.lang import load, load_text
from kedit_vc.lang.loader import Program

from .derive import CONFIDENCE, Answer, Confidence, Oracle, derive, has_rules
from .lower import DEFAULT_METHOD, lower
from .plan import Plan


def compile_file(path: str | os.PathLike[str]) -> Plan:
    """Load, check and lower ``path`` (raises ``SpecError`` on any problem)."""
    return lower(load(path))


def compile_text(text: str, path: str = "<spec>", directory: str | os.PathLike[str] = ".") -> Plan:
    return lower(load_text(text, path, directory))


def should_derive(program: Program, choice: bool | None) -> bool:
    """``--derive/--no-derive`` if given, else the spec's ``derive = ...``, else whether
    the spec has rules or aliases to derive from (rules are opt-in: writing or including
    them is the request)."""
    if choice is not None:
        return choice
    setting = program.derive_setting
    if setting is not None:
        return setting.enabled
    return has_rules(program)


__all__ = ["CONFIDENCE", "DEFAULT_METHOD", "Answer", "Confidence", "Oracle", "Plan", "compile_file",
           "compile_text", "derive", "has_rules", "lower", "should_derive"]

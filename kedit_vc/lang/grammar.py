"""Find and load ``kedit.lark``: shipped as package data, or read from the source tree."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve()
GRAMMAR_NAME = "kedit.lark"


def grammar_path() -> Path:
    """``kedit_vc/grammar/kedit.lark`` in a wheel, ``grammar/kedit.lark`` in a checkout."""
    for folder in (_HERE.parents[1] / "grammar", _HERE.parents[2] / "grammar"):
        candidate = folder / GRAMMAR_NAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{GRAMMAR_NAME} is missing from the package and the source tree")


def grammar_text() -> str:
    return grammar_path().read_text(encoding="utf-8")

"""String literals of the .kedit language: one line, double quotes, a few escapes.

``quote`` and ``unquote`` are exact inverses for every Python string without lone
surrogates, which the formatter's round-trip property relies on.
"""

from __future__ import annotations

import re

_SIMPLE = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.DOTALL)
_QUOTE_MAP = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


class EscapeError(ValueError):
    """A backslash sequence the language does not define; ``offset`` is its index."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def unquote(literal: str) -> str:
    """The value of a ``"..."`` token (quotes included)."""
    body = literal[1:-1]
    if "\\" not in body:
        return body

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in _SIMPLE:
            return _SIMPLE[code]
        if len(code) in (5, 9) and code[0] in "uU":
            char = chr(int(code[1:], 16)) if int(code[1:], 16) <= 0x10FFFF else None
            if char is not None and not 0xD800 <= ord(char) <= 0xDFFF:
                return char
        raise EscapeError(
            f"unknown escape '\\{code[:1]}' (use \\\" \\\\ \\n \\t \\r or \\uXXXX)",
            match.start() + 1,
        )

    return _ESCAPE_RE.sub(replace, body)


def _escape_char(char: str) -> str:
    if char in _QUOTE_MAP:
        return _QUOTE_MAP[char]
    if char == " " or char.isprintable():
        return char
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def quote(value: str) -> str:
    """``value`` as a .kedit string literal."""
    if value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return '"' + "".join(_escape_char(c) for c in value) + '"'

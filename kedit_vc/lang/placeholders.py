"""``{subject}`` placeholders: the only one the language defines.

Any ``{identifier}`` (or an empty ``{}``) is taken as a placeholder and checked;
other braces, as in wiki markup ``{| class=...``, are plain text.
"""

from __future__ import annotations

import re

SUBJECT = "{subject}"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)?\}")


def placeholders(text: str) -> list[tuple[str, int]]:
    """(name, offset) of every placeholder in ``text``; ``{}`` has the name ''."""
    return [(m.group(1) or "", m.start()) for m in _PLACEHOLDER.finditer(text)]


def fill(template: str, subject: str) -> str:
    """``template`` with every ``{subject}`` replaced by ``subject``."""
    return template.replace(SUBJECT, subject)


def to_rome(template: str) -> str:
    """The ROME request convention: ``{}`` for the subject, other braces escaped.

    ROME and MEMIT call ``prompt.format(subject)``, so literal braces are doubled.
    """
    pieces = template.split(SUBJECT)
    escaped = [p.replace("{", "{{").replace("}", "}}") for p in pieces]
    return "{}".join(escaped)

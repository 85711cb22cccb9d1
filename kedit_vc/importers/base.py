"""What every importer shares: reading records, building edits, writing the spec.

Importers turn benchmark records into IR and let the formatter write the text, so
an imported spec is already in canonical form. Whatever an importer has to change
or drop (a stripped space, a record it cannot represent) it says in ``notes``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from kedit_vc.errors import KvcError
from kedit_vc.lang.format import format_items
from kedit_vc.lang.ir import Edit, Portability, Probe
from kedit_vc.lang.placeholders import SUBJECT, placeholders


class ImportDataError(KvcError):
    """A benchmark file that is not what its format promises."""

    exit_code = 2


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The JSON list of records in ``path``."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise ImportDataError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ImportDataError(f"cannot read {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise ImportDataError(f"{path}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ImportDataError(f"{path}: expected a JSON list of records")
    return data


def templated(text: str, subject: str) -> str:
    """``text`` with the subject written as ``{subject}`` (compiling puts it back exactly)."""
    return text.replace(subject, SUBJECT) if subject else text


def representable(*texts: str) -> bool:
    """Texts that contain nothing the spec would read as a placeholder."""
    return not any(placeholders(t) for t in texts)


@dataclass
class _Draft:
    subject: str
    prompt: str
    old: str | None
    new: str
    probes: list[Probe] = field(default_factory=list)
    portability: list[Probe] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    def build(self) -> Edit:
        body: list[Probe | Portability] = list(self.probes)
        if self.portability:
            body.append(Portability(tuple(self.portability)))
        return Edit(self.subject, None, self.prompt, self.old, self.new, tuple(body))


@dataclass
class SpecBuilder:
    """Edits in record order, merging repeats of one fact and refusing conflicts."""

    drafts: dict[tuple[str, str], _Draft] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def find(self, subject: str, prompt: str) -> _Draft | None:
        return self.drafts.get((subject, prompt))

    def conflicts(self, subject: str, prompt: str, new: str) -> bool:
        draft = self.find(subject, prompt)
        return draft is not None and draft.new != new

    def add(self, subject: str, prompt: str, old: str | None, new: str, comment: str) -> _Draft:
        """The draft for this fact: a new one, or the earlier identical one."""
        draft = self.find(subject, prompt)
        if draft is None:
            draft = _Draft(subject, prompt, old, new)
            self.drafts[(subject, prompt)] = draft
        draft.comments.append(comment)
        return draft

    def text(self, header: list[str]) -> str:
        parts = ["\n".join(f"# {line}".rstrip() for line in header) + "\n"]
        for draft in self.drafts.values():
            comments = "".join(f"# {c}\n" for c in draft.comments)
            parts.append(comments + format_items([draft.build()]))
        return "\n".join(parts)


@dataclass(frozen=True)
class ImportResult:
    """An imported spec: its text, how many edits and records it holds, and notes."""

    text: str
    edits: int
    records: int
    notes: tuple[str, ...] = ()


def clean_answer(value: Any, counter: list[int]) -> str:
    """A target string without surrounding spaces (scorers add the leading space)."""
    text = str(value)
    if text != text.strip():
        counter[0] += 1
    return text.strip()

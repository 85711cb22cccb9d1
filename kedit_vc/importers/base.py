"""What every importer shares: reading records, building edits, writing the spec.

Importers turn benchmark records into IR and let the formatter write the text, so
an imported spec is already in canonical form. Whatever an importer has to change
or drop (a stripped space, a record it cannot represent) it says in ``notes``.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kedit_vc.errors import KvcError
from kedit_vc.lang.format import format_items
from kedit_vc.lang.grammar import grammar_text
from kedit_vc.lang.ir import Edit, Item, Portability, Probe, Relation
from kedit_vc.lang.placeholders import SUBJECT, placeholders


class ImportDataError(KvcError):
    """A benchmark file that is not what its format promises."""

    exit_code = 2


class Record(dict):
    """A record (a dict) that remembers the line of the file it starts on."""

    line: int = 0


#: Problems listed in one error before the rest are counted.
MAX_LISTED = 50


class Problems:
    """Located problems with the rows of one file, gathered so one run reports them all."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.messages: list[str] = []

    def add(self, line: int, message: str) -> None:
        self.messages.append(f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}")

    def raise_if_any(self) -> None:
        """Raise one ``ImportDataError`` listing every problem (nothing is written then)."""
        if not self.messages:
            return
        shown = self.messages[:MAX_LISTED]
        more = len(self.messages) - len(shown)
        tail = [f"... and {more} more"] if more else []
        raise ImportDataError("\n".join([*shown, *tail,
                                          f"{len(self.messages)} problem(s); no spec written"]))


def _open_text(path: str | os.PathLike[str]) -> str:
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        raise ImportDataError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ImportDataError(f"{path} is a directory, not a data file") from None
    except UnicodeDecodeError as error:
        raise ImportDataError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise ImportDataError(f"cannot read {path}: {error.strerror or error}") from None


def read_records(path: str | os.PathLike[str]) -> list[Record]:
    """The JSON list of records in ``path``, each with the line it starts on.

    The list is decoded one element at a time (``raw_decode``) so every record knows
    its line; the cost is one scan of the text, as for ``json.load``.
    """
    text = _open_text(path)
    decoder = json.JSONDecoder()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportDataError(f"{path}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}") from None
    if not isinstance(data, list):
        raise ImportDataError(f"{path}: expected a JSON list of records")
    records: list[Record] = []
    position, line = text.index("[") + 1, text.count("\n", 0, text.index("[")) + 1
    for index in range(len(data)):
        start = _skip(text, position, ",")
        line += text.count("\n", position, start)
        value, end = decoder.raw_decode(text, start)
        if not isinstance(value, dict):
            raise ImportDataError(f"{path}:{line}: record {index} is a JSON {type(value).__name__}, "
                                  "not an object; expected a JSON list of records")
        record = Record(value)
        record.line = line
        records.append(record)
        line += text.count("\n", start, end)
        position = end
    return records


def _skip(text: str, position: int, separators: str) -> int:
    """The position of the next character that is neither whitespace nor a separator."""
    while position < len(text) and (text[position].isspace() or text[position] in separators):
        position += 1
    return position


def templated(text: str, subject: str) -> str:
    """``text`` with the subject written as ``{subject}`` (compiling puts it back exactly)."""
    return text.replace(subject, SUBJECT) if subject else text


def representable(*texts: str) -> bool:
    """Texts that contain nothing the spec would read as a placeholder."""
    return not any(placeholders(t) for t in texts)


#: Words the lexer reads as keywords (``MODEL.2: /model\\b/`` in the grammar):
#: a relation named so would not parse.
KEYWORDS = frozenset(re.findall(r"^_?[A-Z]+\.2: /([a-z]+)\\b/", grammar_text(), re.MULTILINE))
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def template_slug(template: str) -> str:
    """A readable relation name from a prompt template's words.

    ``"The mother tongue of {subject} is"`` -> ``the_mother_tongue_of_is``; accents are
    dropped, the name is cut at 48 characters, and a name that would read as a
    keyword or start with a digit is changed so it lexes as a NAME.
    """
    ascii_text = unicodedata.normalize("NFKD", template.replace(SUBJECT, " ")).encode("ascii", "ignore")
    words = re.findall(r"[A-Za-z0-9]+", ascii_text.decode())
    slug = "_".join(w.lower() for w in words)[:48].strip("_") or "fact"
    if slug[0].isdigit():
        slug = "r_" + slug
    return slug + "_rel" if slug in KEYWORDS else slug


def is_relation_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and name not in KEYWORDS


@dataclass
class _Draft:
    subject: str
    prompt: str
    old: str | None
    new: str
    relation: str | None = None
    probes: list[Probe] = field(default_factory=list)
    portability: list[Probe] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    def build(self, templates: dict[str, str]) -> Edit:
        """The edit; it names its relation, and its own wording only where that differs."""
        body: list[Probe | Portability] = list(self.probes)
        if self.portability:
            body.append(Portability(tuple(self.portability)))
        own = None if self.relation is not None and templates.get(self.relation) == self.prompt else self.prompt
        return Edit(self.subject, self.relation, own, self.old, self.new, tuple(body))


@dataclass
class SpecBuilder:
    """Edits in record order, merging repeats of one fact and refusing conflicts.

    Relations are declared before the edits: ``relate`` names one (a dataset relation
    id, or a name from the table); ``by_template`` names one per distinct prompt
    template. An edit of a named relation whose prompt is not the relation's template
    is written ``edit "S" REL prompt "..."``.
    """

    drafts: dict[tuple[str, str], _Draft] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    relations: dict[str, str] = field(default_factory=dict)  # name -> template, in declaration order
    _by_template: dict[str, str] = field(default_factory=dict)

    def find(self, subject: str, prompt: str) -> _Draft | None:
        return self.drafts.get((subject, prompt))

    def conflicts(self, subject: str, prompt: str, new: str) -> bool:
        draft = self.find(subject, prompt)
        return draft is not None and draft.new != new

    def add(self, subject: str, prompt: str, old: str | None, new: str, comment: str,
            relation: str | None = None) -> _Draft:
        """The draft for this fact: a new one, or the earlier identical one."""
        draft = self.find(subject, prompt)
        if draft is None:
            draft = _Draft(subject, prompt, old, new, relation)
            self.drafts[(subject, prompt)] = draft
        draft.comments.append(comment)
        return draft

    def relate(self, name: str, template: str) -> str:
        """Declare relation ``name`` with ``template`` (the first declaration stays)."""
        self.relations.setdefault(name, template)
        self._by_template.setdefault(template, name)
        return name

    def by_template(self, template: str) -> str:
        """The relation for ``template``: an existing one, else a new readable name."""
        if template in self._by_template:
            return self._by_template[template]
        slug = template_slug(template)
        name, number = slug, 1
        while name in self.relations:
            number += 1
            name = f"{slug}_{number}"
        return self.relate(name, template)

    def declare_most_common(self, prompts: Mapping[str, Iterable[str]]) -> None:
        """Declare each named relation with its most frequent prompt (ties: the first seen)."""
        for name, templates in prompts.items():
            counts = Counter(templates)
            self.relate(name, max(counts, key=counts.__getitem__))

    def text(self, header: list[str], relations: str = "Relations") -> str:
        """The spec: ``header`` as comments, relations under a ``relations`` comment, edits."""
        parts = ["\n".join(f"# {line}".rstrip() for line in header) + "\n"]
        if self.relations:
            declared: list[Item] = [Relation(n, t) for n, t in self.relations.items()]
            parts.append(f"# {relations}\n" + format_items(declared))
        for draft in self.drafts.values():
            comments = "".join(f"# {c}\n" for c in draft.comments)
            parts.append(comments + format_items([draft.build(self.relations)]))
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

"""A table of facts (CSV or JSONL), one edit per row.

Columns of a table (names are case-insensitive):

- ``subject`` (required): who or what the fact is about.
- ``prompt``: the fact's prompt with ``{subject}`` where the subject goes, once.
- ``relation``: a relation name (letters, digits, ``_``; e.g. a Wikidata id ``P131``).
  A row needs ``prompt``, ``relation`` or both. With both, the relation is declared
  with the first prompt given for it and the row keeps its own wording; a row with
  only ``relation`` uses a relation that some row declares. A row with only ``prompt``
  gets one relation per distinct prompt, named from its words.
- ``new`` (required): the new object.
- ``old``: the old (true) object, optional.
- ``paraphrase``, ``paraphrase_2``, ... (any column named ``paraphrase`` plus a
  suffix): prompts that must give the new object too; ``{subject}`` or the subject
  written out. In JSONL a value may also be a list of strings.
- ``neighbour``, ``neighbour_2``, ... (``neighbor`` also): ``prompt => answer``, a
  prompt about something else whose answer must not change. In JSONL a value may
  also be a list of such strings.

Empty cells count as absent. CSV has a header row; JSONL has one JSON object per
line (blank lines are skipped). Every problem is reported as ``file:line`` (the
row's first line) and nothing is written while any remain.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Sequence
from typing import Any

from kedit_vc.errors import UsageError
from kedit_vc.lang.diagnostics import did_you_mean
from kedit_vc.lang.ir import Probe
from kedit_vc.lang.placeholders import SUBJECT, placeholders

from .base import (
    ImportResult,
    Problems,
    Record,
    SpecBuilder,
    _open_text,
    is_relation_name,
    templated,
)

NAME = "table"
FORMATS = ("csv", "jsonl")
COLUMNS = ("subject", "prompt", "relation", "new", "old")
_REPEATED = re.compile(r"^(paraphrase|neighbour|neighbor)(?:[ _-]?\d+)?$")
NEIGHBOUR_SEPARATOR = "=>"


def table_format(path: str | os.PathLike[str], fmt: str | None) -> str:
    """``fmt``, else the file's extension (.csv; .jsonl/.ndjson)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
        return fmt
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension == ".csv":
        return "csv"
    if extension in (".jsonl", ".ndjson"):
        return "jsonl"
    raise UsageError(f"cannot tell the table format of {path} from its extension; pass --format csv|jsonl")


def read(path: str | os.PathLike[str], fmt: str | None, problems: Problems) -> list[Record]:
    """The rows of ``path`` as records with their first line; bad lines go to ``problems``."""
    kind = table_format(path, fmt)
    text = _open_text(path)
    return _read_csv(text, problems) if kind == "csv" else _read_jsonl(text, problems)


def _read_csv(text: str, problems: Problems) -> list[Record]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        problems.add(1, "empty file: expected a header row (subject, prompt or relation, new, ...)")
        return []
    except csv.Error as error:
        problems.add(reader.line_num, f"not valid CSV: {error}")
        return []
    names = [h.strip().lower() for h in header]
    for column, name in enumerate(names):
        if name in names[:column]:
            problems.add(1, f"column '{name}' appears twice; number repeated columns (paraphrase_2, neighbour_2)")
    rows: list[Record] = []
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            problems.add(line, f"not valid CSV: {error}")
            break
        if any(c.strip() for c in cells):
            if len(cells) > len(names):
                problems.add(line, f"{len(cells)} cells but the header names {len(names)} columns")
            record = Record(zip(names, cells))
            record.line = line
            rows.append(record)
        line = reader.line_num + 1
    return rows


def _read_jsonl(text: str, problems: Problems) -> list[Record]:
    rows: list[Record] = []
    for number, raw in enumerate(text.split("\n"), 1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as error:
            problems.add(number, f"not valid JSON (column {error.colno}): {error.msg}")
            continue
        if not isinstance(value, dict):
            problems.add(number, f"expected a JSON object, got a JSON {type(value).__name__}")
            continue
        record = Record({str(k).strip().lower(): v for k, v in value.items() if v is not None})
        record.line = number
        rows.append(record)
    return rows


def _values(row: Record, column: str, problems: Problems) -> list[str]:
    value = row[column]
    items = value if isinstance(value, list) else [value] if value != "" else []
    if not all(isinstance(v, str) for v in items):
        problems.add(row.line, f"column '{column}' must hold text (or, in JSONL, a list of texts)")
        return []
    return [v for v in items if v.strip()]


def _text(row: Record, column: str, problems: Problems) -> str | None:
    """The cell's text; None when the column is absent or the cell empty."""
    if column not in row:
        return None
    value = row[column]
    if not isinstance(value, str):
        problems.add(row.line, f"column '{column}' must hold text, not a JSON {type(value).__name__}")
        return None
    return value if value.strip() else None


def _check_braces(row: Record, column: str, text: str, problems: Problems, allow_subject: bool) -> bool:
    for name, _ in placeholders(text):
        if name != "subject" or not allow_subject:
            shown = "{" + name + "}"
            problems.add(row.line, f"column '{column}': '{shown}' is not a placeholder here"
                         + (" (the only one is {subject})" if allow_subject else ""))
            return False
    return True


def convert(records: Sequence[dict[str, Any]], limit: int | None = None, source: str = "",
            path: str = "", problems: Problems | None = None) -> ImportResult:
    rows = records[:limit] if limit is not None else records
    problems = problems or Problems(path or source or "<table>")
    builder = SpecBuilder()
    parsed: list[tuple[Record, str, str | None, str | None, str, str | None]] = []
    for row in rows:
        assert isinstance(row, Record)
        unknown = [c for c in row if c not in COLUMNS and not _REPEATED.match(c)]
        for column in unknown:
            hint = did_you_mean(column, [*COLUMNS, "paraphrase", "neighbour"])
            problems.add(row.line, f"unknown column '{column}'{hint or ' (see kvc import table --help)'}")
        subject = _text(row, "subject", problems)
        prompt = _text(row, "prompt", problems)
        relation = _text(row, "relation", problems)
        new = _text(row, "new", problems)
        old = _text(row, "old", problems)
        ok = not unknown
        if subject is None or not subject.strip():
            problems.add(row.line, "missing column 'subject'" if "subject" not in row else "empty subject")
            ok = False
        if new is None:
            problems.add(row.line, "empty new object" if "new" in row else "missing column 'new' (the new object)")
            ok = False
        if prompt is None and relation is None:
            problems.add(row.line, "missing column 'prompt' or 'relation': a row needs one of them")
            ok = False
        if prompt is not None:
            count = prompt.count(SUBJECT)
            if count != 1:
                problems.add(row.line, f"the prompt must contain {SUBJECT} exactly once (it has it {count} "
                             "time(s)); write the subject's place as {subject}")
                ok = False
            elif not _check_braces(row, "prompt", prompt, problems, True):
                ok = False
        if relation is not None and not is_relation_name(relation.strip()):
            problems.add(row.line, f"relation name {relation!r} must be letters, digits and '_' "
                         "(not starting with a digit, not a keyword)")
            ok = False
        for column, value in (("new", new), ("old", old)):
            if value is not None and not _check_braces(row, column, value, problems, False):
                ok = False
        if ok:
            assert subject is not None and new is not None
            name = relation.strip() if relation is not None else None
            parsed.append((row, subject, prompt, name, new.strip(), old.strip() if old else None))
            if name is not None and prompt is not None:
                builder.relate(name, prompt)
    for row, subject, prompt, relation, new, old in parsed:
        if relation is not None and relation not in builder.relations:
            problems.add(row.line, f"unknown relation '{relation}'{did_you_mean(relation, builder.relations)}: "
                         "no row gives it a prompt (add a row with both relation and prompt)")
            continue
        template = prompt if prompt is not None else builder.relations[relation or ""]
        name = relation if relation is not None else builder.by_template(template)
        existing = builder.find(subject, template)
        if existing is not None and existing.new != new:
            problems.add(row.line, f"conflicting edit: {subject!r} with this prompt is already changed to "
                         f"{existing.new!r} ({existing.comments[0]})")
            continue
        if old == new:
            problems.add(row.line, f"the new object is the old one ({new!r})")
            continue
        draft = builder.add(subject, template, old, new, f"{source or 'row'} line {row.line}", name)
        for column in row:
            if column.startswith("paraphrase"):
                for text in _values(row, column, problems):
                    if _check_braces(row, column, text, problems, True):
                        draft.probes.append(Probe("paraphrase", text if SUBJECT in text else templated(text, subject)))
            elif column.startswith("neighbo"):
                for text in _values(row, column, problems):
                    if NEIGHBOUR_SEPARATOR not in text:
                        problems.add(row.line, f"column '{column}': write a neighbour as 'prompt => answer'")
                        continue
                    other, answer = (t.strip() for t in text.rsplit(NEIGHBOUR_SEPARATOR, 1))
                    if not other or not answer:
                        problems.add(row.line, f"column '{column}': a neighbour needs a prompt and an answer "
                                     "around '=>'")
                    elif SUBJECT in other:
                        problems.add(row.line, f"column '{column}': a neighbour is about another subject; "
                                     f"it cannot use {SUBJECT}")
                    elif _check_braces(row, column, other + answer, problems, False):
                        draft.probes.append(Probe("neighbour", other, answer))
    problems.raise_if_any()
    merged = sum(len(d.comments) - 1 for d in builder.drafts.values())
    notes = [f"{merged} row(s) repeat an earlier edit; their probes join it"] if merged else []
    header = [f"Imported from the table{' ' + source if source else ''}: {len(rows)} row(s).", *notes]
    text = builder.text(header, f"Relations ({len(builder.relations)})")
    return ImportResult(text, len(builder.drafts), len(rows), tuple(notes))

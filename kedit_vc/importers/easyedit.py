"""EasyEdit's flat edit format: one edit per record, relations by prompt template.

Fields: ``subject``, ``prompt`` (the subject written out), ``target_new`` (required);
``ground_truth`` (old object), ``rephrase_prompt`` (paraphrase), ``locality_prompt`` with
``locality_ground_truth`` (neighbour) and ``case_id`` (a comment) are optional, each a
string or a list. Records are grouped by template (the prompt with the subject written
``{subject}``), one ``relation`` per template named from its words. A record that is
not well formed is an error at its line; a record that contradicts an earlier one
(same subject and prompt, another new object) is skipped with a note.
"""

from __future__ import annotations

from typing import Any

from kedit_vc.lang.ir import Probe

from .base import (
    ImportResult,
    Problems,
    Record,
    SpecBuilder,
    clean_answer,
    representable,
    templated,
)

NAME = "easyedit"
REQUIRED = ("subject", "prompt", "target_new")


def _texts(value: Any) -> list[str] | None:
    """A string or a list of strings as a list; None when it is neither."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v for v in value if v]
    return None


def check_record(record: dict[str, Any], index: int, line: int, problems: Problems) -> bool:
    """Report what makes ``record`` unusable; True when it is usable."""
    where = f"record {index}"
    before = len(problems.messages)
    missing = [f for f in REQUIRED if f not in record]
    if missing:
        problems.add(line, f"{where}: missing field(s) {', '.join(missing)}")
        return False
    for name in (*REQUIRED, "ground_truth"):
        if name in record and record[name] is not None and not isinstance(record[name], str):
            problems.add(line, f"{where}: '{name}' is a JSON {type(record[name]).__name__}, not a string")
    if len(problems.messages) > before:
        return False
    subject, prompt, new = record["subject"], record["prompt"], record["target_new"]
    if not isinstance(subject, str) or not subject.strip():
        problems.add(line, f"{where}: empty subject")
    elif not isinstance(prompt, str) or prompt.count(subject) != 1:
        count = prompt.count(subject) if isinstance(prompt, str) else 0
        problems.add(line, f"{where}: the prompt must contain the subject {subject!r} exactly once "
                     f"(it has it {count} time(s))")
    if not isinstance(new, str) or not new.strip():
        problems.add(line, f"{where}: empty target_new")
    for name in ("rephrase_prompt", "locality_prompt", "locality_ground_truth"):
        if _texts(record.get(name)) is None:
            problems.add(line, f"{where}: '{name}' must be a string or a list of strings")
    if len(problems.messages) == before:
        locality = _texts(record.get("locality_prompt")) or []
        answers = _texts(record.get("locality_ground_truth")) or []
        if len(locality) != len(answers):
            problems.add(line, f"{where}: {len(locality)} locality_prompt(s) but {len(answers)} "
                         "locality_ground_truth(s)")
        texts = [prompt.replace(subject, ""), *(_texts(record.get("rephrase_prompt")) or []), *locality]
        if not representable(*texts):
            problems.add(line, f"{where}: a prompt holds '{{name}}' braces, which a spec reads as a placeholder")
    return len(problems.messages) == before


def convert(records: list[dict[str, Any]], limit: int | None = None, source: str = "",
            path: str = "") -> ImportResult:
    chosen = records[:limit] if limit is not None else records
    problems = Problems(path or source or "<easyedit>")
    builder = SpecBuilder()
    stripped = [0]
    skipped: list[str] = []
    merged = same = 0
    for index, record in enumerate(chosen):
        line = record.line if isinstance(record, Record) else 0
        if not check_record(record, index, line, problems):
            continue
        subject = record["subject"]
        prompt = templated(record["prompt"], subject)
        new = clean_answer(record["target_new"], stripped)
        old = clean_answer(record["ground_truth"], stripped) if record.get("ground_truth") else None
        case = record.get("case_id", index)
        if builder.conflicts(subject, prompt, new):
            skipped.append(str(case))
            continue
        if old == new:
            same += 1
            old = None
        merged += builder.find(subject, prompt) is not None
        draft = builder.add(subject, prompt, old, new, f"easyedit case {case}", builder.by_template(prompt))
        rephrases = _texts(record.get("rephrase_prompt")) or []
        neighbours = zip(_texts(record.get("locality_prompt")) or [], _texts(record.get("locality_ground_truth")) or [])
        draft.probes += [Probe("paraphrase", templated(p, subject)) for p in rephrases]
        draft.probes += [Probe("neighbour", p, clean_answer(a, stripped)) for p, a in neighbours]
    problems.raise_if_any()
    notes = []
    if stripped[0]:
        notes.append(f"stripped surrounding spaces from {stripped[0]} answer(s)")
    if same:
        notes.append(f"{same} record(s) whose ground_truth equals target_new have no old object")
    if merged:
        notes.append(f"{merged} record(s) repeat an earlier edit; their probes join it")
    if skipped:
        notes.append(f"skipped {len(skipped)} record(s) that contradict an earlier record (same subject and "
                     f"prompt, another target_new): cases {', '.join(skipped)}")
    header = [f"Imported from EasyEdit{' ' + source if source else ''}: {len(chosen)} record(s).", *notes]
    text = builder.text(header, f"Relations: one per prompt template ({len(builder.relations)})")
    return ImportResult(text, len(builder.drafts), len(chosen), tuple(notes))

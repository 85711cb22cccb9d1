"""zsRE (MEND eval split with one-hop portability): one question-style edit per record.

``src`` with the subject written as ``{subject}`` is the edit prompt; ``alt`` the new
object; ``answers[0]`` the old one; ``rephrase`` a paraphrase; ``loc``/``loc_ans`` a
neighbour prompt; ``portability`` New Question/New Answer a one-hop probe. ``pred`` (a
model's prediction) and ``cond`` are not imported.

zsRE records carry no relation id; each question's Wikidata id is read from its wording
(``zsre_relations``) and declared as a relation with its most frequent question, so rules
keyed by the id (``specs/rules/world.kedit``) apply; an edit worded otherwise keeps its
own prompt (``edit "S" P176 prompt "What company made {subject}?" ...``).
"""

from __future__ import annotations

from typing import Any

from kedit_vc.lang.ir import Probe

from .base import ImportResult, SpecBuilder, clean_answer, representable, templated
from .zsre_relations import relation_id

NAME = "zsre"


def convert(records: list[dict[str, Any]], limit: int | None = None, source: str = "") -> ImportResult:
    chosen = records[:limit] if limit is not None else records
    builder = SpecBuilder()
    stripped = [0]
    no_subject: list[int] = []
    same_answer: list[int] = []
    more_answers = 0
    skipped: list[int] = []
    relation_prompts: dict[str, list[str]] = {}
    for index, record in enumerate(chosen):
        subject, src = record["subject"], record["src"]
        portability = record.get("portability") or {}
        texts = [src, record.get("rephrase", ""), record.get("loc", ""), portability.get("New Question", "")]
        if src.count(subject) != 1 or not subject:
            no_subject.append(index)
            continue
        new = clean_answer(record["alt"], stripped)
        answers = record.get("answers") or []
        old = clean_answer(answers[0], stripped) if answers else None
        more_answers += len(answers) > 1
        prompt = templated(src, subject)
        if not representable(*texts) or not new or builder.conflicts(subject, prompt, new):
            skipped.append(index)
            continue
        if old == new:
            same_answer.append(index)
            old = None
        relation = relation_id(prompt)
        if relation is not None:
            relation_prompts.setdefault(relation, []).append(prompt)
        draft = builder.add(subject, prompt, old or None, new, f"zsre record {index} ({relation or '?'})", relation)
        if record.get("rephrase"):
            draft.probes.append(Probe("paraphrase", templated(record["rephrase"], subject)))
        if record.get("loc") and str(record.get("loc_ans", "")).strip():
            draft.probes.append(Probe("neighbour", record["loc"], clean_answer(record["loc_ans"], stripped)))
        question, answer = portability.get("New Question"), portability.get("New Answer")
        if question and str(answer or "").strip():
            draft.portability.append(Probe("hop", templated(question, subject), clean_answer(answer, stripped)))
    builder.declare_most_common(relation_prompts)
    unnamed = sum(d.relation is None for d in builder.drafts.values())
    notes = [f"{unnamed} edit(s) whose question names no known relation keep their own prompt"] if unnamed else []
    if stripped[0]:
        notes.append(f"stripped surrounding spaces from {stripped[0]} answer(s)")
    notes.append(f"{len(no_subject)} record(s) whose subject is not in src exactly once were skipped"
                 + (f": records {', '.join(map(str, no_subject))}" if no_subject else ""))
    if same_answer:
        notes.append(f"{len(same_answer)} record(s) whose alt equals answers[0] have no old object: "
                     f"records {', '.join(map(str, same_answer))}")
    if more_answers:
        notes.append(f"{more_answers} record(s) list several answers; the first is the old object")
    if skipped:
        notes.append(f"skipped {len(skipped)} record(s) with placeholder-like braces, an empty alt "
                     f"or a conflicting edit: records {', '.join(map(str, skipped))}")
    header = [f"Imported from zsRE{' ' + source if source else ''}: {len(chosen)} record(s).", *notes]
    text = builder.text(header, "Relations: Wikidata ids read from the question wording, each with its most "
                                "frequent question")
    return ImportResult(text, len(builder.drafts), len(chosen), tuple(notes))

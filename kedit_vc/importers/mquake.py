"""MQuAKE-CF: a case's edits (1-3) plus its multi-hop questions.

Each requested rewrite becomes an edit; the case's questions become ``multihop``
probes on its last edit, expecting ``new_answer`` (``answer`` as the foil) in the
group named by the case id. Cases often repeat an edit of another case: the edit is
written once and collects every case's questions. A case that would contradict an
earlier one (same subject and prompt, another new object) is skipped as a whole.
Each ``relation_id`` (P27, P19, ...) is declared as a relation of that name.
"""

from __future__ import annotations

from typing import Any

from kedit_vc.lang.ir import Probe

from .base import (
    ImportResult,
    SpecBuilder,
    clean_answer,
    is_relation_name,
    representable,
)

NAME = "mquake"


def convert(records: list[dict[str, Any]], limit: int | None = None, source: str = "") -> ImportResult:
    chosen = records[:limit] if limit is not None else records
    builder = SpecBuilder()
    stripped = [0]
    merged = 0
    skipped: list[str] = []
    relation_prompts: dict[str, list[str]] = {}
    for record in chosen:
        case = str(record["case_id"])
        rewrites = record["requested_rewrite"]
        facts = []
        for rewrite in rewrites:
            prompt = rewrite["prompt"].replace("{}", "{subject}")
            facts.append((rewrite["subject"], prompt, clean_answer(rewrite["target_true"]["str"], stripped),
                          clean_answer(rewrite["target_new"]["str"], stripped), rewrite["prompt"],
                          str(rewrite.get("relation_id", ""))))
        new_answer = clean_answer(record["new_answer"], stripped)
        old_answer = clean_answer(record.get("answer", ""), stripped) or None
        ok = (facts and new_answer and representable(*record["questions"])
              and all(s and n and raw.count("{}") == 1 and representable(raw.replace("{}", ""))
                      and not builder.conflicts(s, p, n) for s, p, _, n, raw, _ in facts)
              and len({(s, p) for s, p, *_ in facts}) == len(facts))
        if not ok:
            skipped.append(case)
            continue
        draft = None
        for subject, prompt, old, new, _, relation in facts:
            merged += builder.find(subject, prompt) is not None
            named = relation if is_relation_name(relation) else None
            if named is not None:
                relation_prompts.setdefault(named, []).append(prompt)
            draft = builder.add(subject, prompt, old if old != new else None, new, f"mquake case {case}", named)
        assert draft is not None
        foil = old_answer if old_answer != new_answer else None
        draft.portability += [Probe("multihop", q, new_answer, foil, group=case) for q in record["questions"]]
    builder.declare_most_common(relation_prompts)
    notes = [f"{merged} edit(s) repeat an edit of an earlier case and are written once"]
    if stripped[0]:
        notes.append(f"stripped surrounding spaces from {stripped[0]} answer(s)")
    if skipped:
        notes.append(f"skipped {len(skipped)} case(s) that contradict an earlier case or cannot be "
                     f"written as a spec: cases {', '.join(skipped)}")
    header = [f"Imported from MQuAKE-CF{' ' + source if source else ''}: {len(chosen)} case(s).", *notes]
    text = builder.text(header, "Relations: one per Wikidata relation id")
    return ImportResult(text, len(builder.drafts), len(chosen), tuple(notes))

"""CounterFact (ROME's release): one edit per record.

rewrite prompt ``{}`` -> ``{subject}``; ``paraphrase_prompts`` -> paraphrase (the
subject written as ``{subject}``); ``neighborhood_prompts`` -> ``neighbour prompt``
expecting ``target_true``; ``attribute_prompts`` -> ``attribute prompt`` expecting
``target_new``. ``generation_prompts`` feed fluency scoring, not probes: not imported.

Each Wikidata ``relation_id`` (P131, P27, ...) is declared as a relation of that name
with its most frequent prompt, so rules keyed by the id apply; an edit worded
otherwise keeps its own prompt (``edit "S" P131 prompt "{subject}, in" ...``).
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
    templated,
)

NAME = "counterfact"


def convert(records: list[dict[str, Any]], limit: int | None = None, source: str = "") -> ImportResult:
    chosen = records[:limit] if limit is not None else records
    builder = SpecBuilder()
    stripped, skipped = [0], []
    relation_prompts: dict[str, list[str]] = {}
    for record in chosen:
        rewrite = record["requested_rewrite"]
        subject = rewrite["subject"]
        prompt = rewrite["prompt"].replace("{}", "{subject}")
        new = clean_answer(rewrite["target_new"]["str"], stripped)
        old = clean_answer(rewrite["target_true"]["str"], stripped)
        others = [*record.get("paraphrase_prompts", ()), *record.get("neighborhood_prompts", ()),
                  *record.get("attribute_prompts", ())]
        case = record.get("case_id")
        if (rewrite["prompt"].count("{}") != 1 or not representable(rewrite["prompt"].replace("{}", ""), *others)
                or not subject or not new or builder.conflicts(subject, prompt, new)):
            skipped.append(str(case))
            continue
        relation = str(rewrite.get("relation_id", ""))
        relation_prompts.setdefault(relation, []).append(prompt)
        draft = builder.add(subject, prompt, old if old != new else None, new,
                            f"counterfact case {case} ({relation or '?'})",
                            relation if is_relation_name(relation) else None)
        draft.probes += [Probe("paraphrase", templated(p, subject)) for p in record.get("paraphrase_prompts", ())]
        draft.probes += [Probe("neighbour", p, old) for p in record.get("neighborhood_prompts", ())]
        draft.probes += [Probe("attribute", p, new) for p in record.get("attribute_prompts", ())]
    builder.declare_most_common({r: p for r, p in relation_prompts.items() if is_relation_name(r)})
    notes = ["generation_prompts are not imported (they feed fluency, not probes)"]
    if stripped[0]:
        notes.append(f"stripped surrounding spaces from {stripped[0]} target(s)")
    if skipped:
        notes.append(f"skipped {len(skipped)} record(s) that a spec cannot hold as written "
                     f"(no single {{}}, placeholder-like braces, or a conflicting edit): cases {', '.join(skipped)}")
    header = [f"Imported from CounterFact{' ' + source if source else ''}: {len(chosen)} record(s).", *notes]
    text = builder.text(header, "Relations: one per Wikidata relation id, with its most frequent prompt")
    return ImportResult(text, len(builder.drafts), len(chosen), tuple(notes))

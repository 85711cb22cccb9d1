"""Edits that carry, on CounterFact relations that compose: the same edits with and without
derived edits, judged by composed questions.

A CounterFact record whose relation composes under the shipped rules (born in a city →
the country of that city, citizen of a country → its capital and official language...) and
whose new object is in ``compose_truths`` gets composed probes: "{subject} was born in a
place in the country of" → the country of the NEW city, worded unlike the rules'
relations. They are MQuAKE-style probes (kind ``multihop``, one group per question, every
accepted name of the answer a probe of the group): a question counts as answered when any
accepted name is (teacher-forced: every token the argmax; generative: the greedy
continuation contains it). Derivation reads the edit and the rules only (``kvc compile
--derive``: the unedited model asked about the new object); the composed probes and their
answers are the measuring stick. Records are imported as ``kvc import counterfact`` writes
them (one relation per Wikidata id, so the rules keyed by the id apply).

    OMP_NUM_THREADS=1 python bench/derive_counterfact.py --start 0 --n 400 --only-derived
    OMP_NUM_THREADS=1 python bench/derive_counterfact.py --start 0 --n 400 --only-derived --method ultraedit
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any, Mapping

from common import setup
from compose_truths import composed_probes
from derive_zsre import RULES, Item, compare, derive_parser

KEYS = ("reliability", "raw_reliability", "reliability_cf", "gen_reliability", "raw_gen_reliability",
        "generalization_cf", "gen_generalization", "locality_cf", "locality", "gen_locality_agree",
        "portability_multihop", "raw_portability_multihop", "gen_portability_multihop",
        "raw_gen_portability_multihop")


def arguments() -> argparse.Namespace:
    return derive_parser(__doc__, 0, "records scanned; those that compose are used").parse_args()


def spec_text(record: Mapping[str, Any]) -> str:
    """The record as ``kvc import counterfact`` writes it, under the shipped rules."""
    from kedit_vc.importers.counterfact import convert

    return f'include "{RULES}"\n' + convert([dict(record)]).text


def composed_case(record: Mapping[str, Any]) -> tuple[Any, list[dict[str, Any]]] | None:
    """The record's CounterFact case with its composed probes added (None if it has none)."""
    from kedit_vc.compiler.plan import Probe
    from kedit_vc.eval.datasets import counterfact_case

    rewrite = record["requested_rewrite"]
    questions = composed_probes(rewrite["relation_id"], rewrite["subject"], rewrite["target_new"]["str"])
    if not questions:
        return None
    case = counterfact_case(record)
    request = case.requests[0]
    probes = tuple(Probe("multihop", question, answer, group=f"{request.edit_id}/{k}")
                   for k, (question, answers) in enumerate(questions) for answer in answers)
    case = replace(case, requests=(replace(request, probes=request.probes + probes),))
    return case, [{"question": q, "answers": list(a)} for q, a in questions]


def main() -> None:
    args = arguments()
    setup(args)
    from kedit_vc.eval.datasets import load_records
    from kedit_vc.models import load_model

    items = []
    for offset, record in enumerate(load_records("counterfact")[args.start:args.start + args.n]):
        built = composed_case(record)
        if built is None:
            continue
        rewrite = record["requested_rewrite"]
        items.append(Item(args.start + offset, spec_text(record), built[0], {
            "prompt": rewrite["prompt"].format(rewrite["subject"]), "new": rewrite["target_new"]["str"],
            "relation": rewrite["relation_id"], "composed": built[1]}))
    print(f"{len(items)} of {args.n} records compose", flush=True)
    compare(args, load_model(args.model), items, "counterfact", f"derive_counterfact_{args.method}{args.tag}", KEYS)


if __name__ == "__main__":
    main()

"""Edits that carry, on MQuAKE-CF: the same edits with and without derived edits.

Each selected case edits one fact at the first hop of a two-hop chain (a person's
citizenship P27, a work's country of origin P495), so the multi-hop questions' new
answer follows from the edit and one fact about the NEW country. For each case a spec
is written (``include "rules/mquake.kedit"`` plus the edit) and compiled as ``kvc
compile --derive`` does: ``compiler.derive`` with ``ops.derive.ModelOracle`` on the
unedited base model (answers kept when confident). The case is then edited twice, from
the base weights each time: the explicit edit alone, and the explicit edit with its
derived edits in the same editor call. Derived requests carry no probes: every metric
is on the explicit edit's rewrite prompt and the case's multi-hop questions
(``portability_multihop``: any question of a case answered; ``portability``: token
accuracy; ``gen_*``: judged on greedy continuations). Also recorded: which derived
objects match MQuAKE's own second-hop answer (how often the model's knowledge was right).

    OMP_NUM_THREADS=1 python bench/derive_mquake.py --n 20
    OMP_NUM_THREADS=1 python bench/derive_mquake.py --model gemma3-270m --n 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from common import parser, save, setup

RULES = Path(__file__).resolve().parents[1] / "specs" / "rules" / "mquake.kedit"
#: Edited relations the rules file has rules for, with their cloze template.
RULED = ("P27", "P495")
REPORT = ("reliability", "raw_reliability", "gen_reliability", "portability", "portability_multihop",
          "gen_portability_multihop", "raw_portability")


def arguments() -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--method", default="rome", help="editing method (default rome)")
    p.add_argument("--n", type=int, default=20, help="cases (default 20)")
    p.add_argument("--skip", type=int, default=0, help="selected cases to skip first")
    p.add_argument("--tag", default="", help="suffix of the result file name")
    return p.parse_args()


def selected(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Cases with one edit, of a ruled relation, at the first hop of a two-hop chain."""
    out = []
    for record in records:
        rewrites = record["requested_rewrite"]
        chain = [t[1] for t in record["orig"]["new_triples"]]
        if len(rewrites) == 1 and len(chain) == 2 and rewrites[0]["relation_id"] in RULED \
                and chain[0] == rewrites[0]["relation_id"]:
            out.append(record)
    return out


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def spec_text(record: Mapping[str, Any]) -> str:
    rw = record["requested_rewrite"][0]
    return (f"include {_quote(str(RULES))}\n"
            f"edit {_quote(rw['subject'])} {rw['relation_id']}: {_quote(rw['target_true']['str'])} -> "
            f"{_quote(rw['target_new']['str'])}\n")


def derived_from(path: Path, text: str, model: Any, tokenizer: Any) -> tuple[list[Any], tuple[str, ...]]:
    """The derived requests of spec ``text`` written to ``path`` (``kvc compile --derive``'s,
    probes dropped: derived edits are not scored) and the plan's notes."""
    from dataclasses import replace

    from kedit_vc.ops.derive import derived_plan

    path.write_text(text, encoding="utf-8")
    plan = derived_plan(path, model, tokenizer, choice=True)
    return [replace(r, probes=()) for call in plan.calls for r in call.requests if r.derived is not None], plan.notes


def compiled(record: Mapping[str, Any], model: Any, tokenizer: Any, folder: Path) -> list[Any]:
    """The derived requests for ``record`` (``kvc compile --derive``'s), probes dropped."""
    return derived_from(folder / f"case_{record['case_id']}.kedit", spec_text(record), model, tokenizer)[0]


def truth(record: Mapping[str, Any]) -> set[str]:
    hop = record["new_single_hops"][1]
    return {a.lower() for a in (hop["answer"], *hop.get("answer_alias", ()))}


def main() -> None:
    args = arguments()
    setup(args)
    from kedit_vc.editors.base import get_editor
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.eval.datasets import BenchCase, load_records, mquake_case
    from kedit_vc.models import load_model
    from kedit_vc.ops.bench import run_bench

    records = selected(load_records("mquake"))[args.skip:args.skip + args.n]
    loaded = load_model(args.model)
    model, tokenizer = loaded.model, loaded.tokenizer
    editor, hp = get_editor(args.method), build_hparams(args.method, {})
    plain = [mquake_case(r) for r in records]
    started = time.perf_counter()
    derived_rows = []
    with_derived = []
    with tempfile.TemporaryDirectory() as tmp:
        for record, case in zip(records, plain):
            derived = compiled(record, model, tokenizer, Path(tmp))
            expected = truth(record)
            derived_rows.append({
                "case_id": record["case_id"], "edit": record["requested_rewrite"][0]["fact_new"],
                "derived": [{"prompt": r.prompt.format(r.subject), "new": r.target_new, "old": r.target_true,
                             "rule": r.derived.rule, "evidence": r.derived.evidence,
                             "matches_mquake_hop": r.target_new.lower() in expected} for r in derived],
                "mquake_hop": record["new_single_hops"][1]["cloze"] + " " + record["new_single_hops"][1]["answer"]})
            with_derived.append(BenchCase(case.case_id, case.requests + tuple(derived)))
    derive_seconds = time.perf_counter() - started
    n_derived = sum(len(row["derived"]) for row in derived_rows)
    n_match = sum(d["matches_mquake_hop"] for row in derived_rows for d in row["derived"])
    results: dict[str, Any] = {"model": args.model, "method": args.method, "n_cases": len(records),
                               "threads": args.threads, "derive_seconds": round(derive_seconds, 1),
                               "derived_edits": n_derived, "derived_matching_mquake": n_match,
                               "cases": derived_rows, "runs": {}}
    name = f"derive_mquake_{args.method}{args.tag}"
    for label, cases in (("explicit", plain), ("derived", with_derived)):
        result = run_bench(model, tokenizer, "mquake", cases, editor, hp, fingerprint=loaded.fingerprint,
                           progress=True)
        report = result.report
        results["runs"][label] = {
            "metrics": {k: report.metrics.get(k) for k in REPORT},
            "pre_metrics": {k: report.pre_metrics.get(k) for k in REPORT},
            "edit_seconds": round(result.edit_seconds, 1), "wall_seconds": round(result.wall_seconds, 1)}
        save(name, results, args.results_dir)  # partial results after each run
        print(f"{label:9s} " + "  ".join(f"{k}={report.metrics.get(k, float('nan')):.3f}" for k in REPORT
                                        if report.metrics.get(k) is not None))
    print("pre       " + "  ".join(f"{k}={v:.3f}" for k, v in results["runs"]["explicit"]["pre_metrics"].items()
                                    if v is not None))
    print(f"{n_derived} derived edits over {len(records)} cases; {n_match} match MQuAKE's second hop")


if __name__ == "__main__":
    main()

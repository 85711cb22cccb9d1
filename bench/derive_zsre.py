"""Edits that carry, on zsRE: the same edits with and without derived edits.

Each zsRE record is imported as ``kvc import zsre`` writes it (the question's Wikidata
relation id read from its wording, ``importers/zsre_relations.py``) under ``include
"rules/world.kedit"``, and compiled as ``kvc compile --derive`` does: ``compiler.derive``
with ``ops.derive.ModelOracle`` on the unedited base model, answers kept when confident.
Derivation reads the edit and the rules only; the record's portability probe (a
one-hop question whose answer is a fact about the NEW object) is the measuring stick.

Every record is edited from the base weights with its explicit edit alone; the records
for which derivation kept an edit are edited again with their derived edits in the
same editor call. Derived requests carry no probes. A record without derived edits
would be edited identically in both runs (the editors are deterministic), so its
"derived" row is its "explicit" row; the JSON says which records had derived edits and
gives both runs on those records alone too.

    OMP_NUM_THREADS=1 python bench/derive_zsre.py --start 100 --n 100
    OMP_NUM_THREADS=1 python bench/derive_zsre.py --model gemma3-270m --start 100 --n 100
    OMP_NUM_THREADS=1 python bench/derive_zsre.py --method memit --start 100 --n 100 --only-derived
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from common import parser, save, setup
from derive_mquake import derived_from

RULES = Path(__file__).resolve().parents[1] / "specs" / "rules" / "world.kedit"
REPORT = ("reliability", "raw_reliability", "gen_reliability", "raw_gen_reliability", "generalization",
          "gen_generalization", "locality", "gen_locality_agree", "portability", "raw_portability",
          "gen_portability", "raw_gen_portability")


def arguments() -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--method", default="rome", help="editing method (default rome)")
    p.add_argument("--start", type=int, default=100, help="first zsRE record (default 100)")
    p.add_argument("--n", type=int, default=100, help="records (default 100)")
    p.add_argument("--tag", default="", help="suffix of the result file name")
    p.add_argument("--only-derived", action="store_true",
                   help="edit only the records where derivation kept an edit (both ways): the whole-set "
                        "difference is theirs times their share, at a fraction of the cost")
    return p.parse_args()


def spec_text(record: Mapping[str, Any]) -> str:
    """The record as ``kvc import zsre`` writes it, under the shipped rules."""
    from kedit_vc.importers.zsre import convert

    return f'include "{RULES}"\n' + convert([dict(record)]).text


def mean_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Each reported metric averaged over the rows that have it (as the report averages)."""
    out: dict[str, float | None] = {}
    for key in REPORT:
        values = [r["metrics"][key] for r in rows if r["metrics"].get(key) is not None]
        out[key] = round(sum(values) / len(values), 4) if values else None
    return out


def main() -> None:
    args = arguments()
    setup(args)
    from kedit_vc.editors.base import get_editor
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.eval.datasets import BenchCase, load_records, zsre_case
    from kedit_vc.importers.zsre_relations import relation_id
    from kedit_vc.models import load_model
    from kedit_vc.ops.bench import run_bench

    records = load_records("zsre")[args.start:args.start + args.n]
    loaded = load_model(args.model)
    model, tokenizer = loaded.model, loaded.tokenizer
    editor, hp = get_editor(args.method), build_hparams(args.method, {})
    plain = [zsre_case(r, args.start + i) for i, r in enumerate(records)]
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with_derived: list[BenchCase] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (record, case) in enumerate(zip(records, plain)):
            derived, notes = derived_from(Path(tmp) / f"record_{args.start + i}.kedit", spec_text(record),
                                          model, tokenizer)
            rows.append({
                "record": args.start + i, "question": record["src"], "new": record["alt"],
                "relation": relation_id(record["src"].replace(record["subject"], "{subject}")),
                "portability": {"question": record["portability"]["New Question"],
                                "answer": record["portability"]["New Answer"],
                                "recalled": record["portability"].get("Recalled Relation")},
                "derived": [{"prompt": r.prompt.format(r.subject), "new": r.target_new, "old": r.target_true,
                             "rule": r.derived.rule, "evidence": r.derived.evidence} for r in derived],
                "notes": list(notes)})
            if derived:
                with_derived.append(BenchCase(case.case_id, case.requests + tuple(derived)))
            print(f"record {args.start + i}: {len(derived)} derived", flush=True)
    results: dict[str, Any] = {
        "model": args.model, "method": args.method, "start": args.start, "n_records": len(records),
        "threads": args.threads, "derive_seconds": round(time.perf_counter() - started, 1),
        "derived_edits": sum(len(r["derived"]) for r in rows),
        "records_with_derived": [int(c.case_id) for c in with_derived], "records": rows, "runs": {}}
    name = f"derive_zsre_{args.method}{args.tag}"
    save(name, results, args.results_dir)
    reports: dict[str, Any] = {}
    chosen_ids = {c.case_id for c in with_derived}
    explicit_cases = [c for c in plain if c.case_id in chosen_ids] if args.only_derived else plain
    results["only_derived"] = args.only_derived
    for label, cases in (("explicit", explicit_cases), ("derived_only", with_derived)):
        if not cases:
            continue
        result = run_bench(model, tokenizer, "zsre", cases, editor, hp, fingerprint=loaded.fingerprint,
                           progress=True)
        reports[label] = result.report
        results["runs"][label] = {
            "pre_metrics": {k: result.report.pre_metrics.get(k) for k in REPORT},
            "edit_seconds": round(result.edit_seconds, 1), "wall_seconds": round(result.wall_seconds, 1)}
        save(name, results, args.results_dir)  # partial results after each run
    explicit_rows = {row.edit_id: row.to_json() for row in reports["explicit"].rows}
    derived_rows = ({row.edit_id: row.to_json() for row in reports["derived_only"].rows}
                    if "derived_only" in reports else {})
    ids = [c.requests[0].edit_id for c in explicit_cases]
    subset = [c.requests[0].edit_id for c in with_derived]
    results["metrics"] = {
        "explicit_on_derived_records": mean_rows([explicit_rows[i] for i in subset]),
        "derived_on_derived_records": mean_rows([derived_rows[i] for i in subset]),
        "pre": {k: reports["explicit"].pre_metrics.get(k) for k in REPORT}}
    if not args.only_derived:
        results["metrics"]["explicit"] = mean_rows([explicit_rows[i] for i in ids])
        results["metrics"]["derived"] = mean_rows([derived_rows.get(i, explicit_rows[i]) for i in ids])
    save(name, results, args.results_dir)
    for label, values in results["metrics"].items():
        print(f"{label:28s} " + "  ".join(f"{k}={v:.3f}" for k, v in values.items() if v is not None))
    print(f"{results['derived_edits']} derived edits on {len(subset)} of {len(records)} records")


if __name__ == "__main__":
    main()

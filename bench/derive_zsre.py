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
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from common import RESULTS, hparam_overrides, parser, save, setup
from derive_mquake import derived_from

RULES = Path(__file__).resolve().parents[1] / "specs" / "rules" / "world.kedit"
REPORT = ("reliability", "raw_reliability", "gen_reliability", "raw_gen_reliability", "generalization",
          "gen_generalization", "locality", "gen_locality_agree", "portability", "raw_portability",
          "gen_portability", "raw_gen_portability")


def derive_parser(doc: str | None, start: int, records: str) -> argparse.ArgumentParser:
    """The options of a with/without-derivation comparison (``records``: what ``--n`` counts)."""
    p = parser(doc)
    p.add_argument("--method", default="rome", help="editing method (default rome)")
    p.add_argument("--start", type=int, default=start, help=f"first record (default {start})")
    p.add_argument("--n", type=int, default=100, help=f"{records} (default 100)")
    p.add_argument("--tag", default="", help="suffix of the result file name")
    p.add_argument("--only-derived", action="store_true",
                   help="edit only the records where derivation kept an edit (both ways): the whole-set "
                        "difference is theirs times their share, at a fraction of the cost")
    p.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE",
                   help="editor override (JSON value), for both runs")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs (explicit, with derived edits) a stopped run of the same name saved, when "
                        "derivation gives the same edits again; run only the others")
    return p


def arguments() -> argparse.Namespace:
    return derive_parser(__doc__, 100, "zsRE records").parse_args()


def spec_text(record: Mapping[str, Any]) -> str:
    """The record as ``kvc import zsre`` writes it, under the shipped rules."""
    from kedit_vc.importers.zsre import convert

    return f'include "{RULES}"\n' + convert([dict(record)]).text


def resolved_json(method: str, model: Any, hp: Any) -> dict[str, Any]:
    """The editor's settings as it will run them (model defaults filled), JSON-ready."""
    from dataclasses import asdict

    from kedit_vc.editors.registry import resolve_hparams

    return json.loads(json.dumps(asdict(resolve_hparams(method, model, hp)), default=str))


def kept_runs(args: argparse.Namespace, name: str, results: Mapping[str, Any]) -> dict[str, Any]:
    """With ``--resume``: the runs a stopped run of ``name`` saved, if it edited the same records
    with the same settings and derivation gave the same edits; else none (and why, printed)."""
    path = Path(args.results_dir or RESULTS) / f"{name}.json"
    if not args.resume or not path.is_file():
        return {}
    old = json.loads(path.read_text())
    same = ("model", "method", "hparams", "n_records", "records", "only_derived")
    differs = [k for k in same if old.get(k) != json.loads(json.dumps(results.get(k)))]
    if differs:
        print(f"--resume: {path.name} differs in {', '.join(differs)}; running everything again", flush=True)
        return {}
    kept = dict(old.get("runs", {}))
    print(f"--resume: keeping the saved run(s) {', '.join(kept) or '(none)'}", flush=True)
    return kept


def mean_rows(rows: Sequence[Mapping[str, Any]], keys: Sequence[str] = REPORT) -> dict[str, float | None]:
    """Each reported metric averaged over the rows that have it (as the report averages)."""
    out: dict[str, float | None] = {}
    for key in keys:
        values = [r["metrics"][key] for r in rows if r["metrics"].get(key) is not None]
        out[key] = round(sum(values) / len(values), 4) if values else None
    return out


def main() -> None:
    args = arguments()
    setup(args)
    from kedit_vc.eval.datasets import load_records, zsre_case
    from kedit_vc.importers.zsre_relations import relation_id
    from kedit_vc.models import load_model

    records = load_records("zsre")[args.start:args.start + args.n]
    items = [Item(args.start + i, spec_text(r), zsre_case(r, args.start + i), {
        "question": r["src"], "new": r["alt"],
        "relation": relation_id(r["src"].replace(r["subject"], "{subject}")),
        "portability": {"question": r["portability"]["New Question"], "answer": r["portability"]["New Answer"],
                        "recalled": r["portability"].get("Recalled Relation")}})
             for i, r in enumerate(records)]
    compare(args, load_model(args.model), items, "zsre", f"derive_zsre_{args.method}{args.tag}")


@dataclass(frozen=True)
class Item:
    """One record to edit: its index, its spec (under the rules), its scored case and what the JSON says of it."""

    index: int
    spec: str
    case: Any
    info: Mapping[str, Any]


def compare(args: argparse.Namespace, loaded: Any, items: Sequence[Item], benchmark: str, name: str,
            keys: Sequence[str] = REPORT) -> dict[str, Any]:
    """Derive each item's edits, edit every item alone (``--only-derived``: only those with
    derived edits) and those with derived edits again with them; save and print the
    ``keys`` metrics on the derived records and on all."""
    from kedit_vc.editors.base import get_editor
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.eval.datasets import BenchCase
    from kedit_vc.ops.bench import run_bench

    model, tokenizer = loaded.model, loaded.tokenizer
    overrides = hparam_overrides(args.hparam)
    editor, hp = get_editor(args.method), build_hparams(args.method, overrides)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with_derived: list[BenchCase] = []
    with tempfile.TemporaryDirectory() as tmp:
        for item in items:
            derived, notes = derived_from(Path(tmp) / f"record_{item.index}.kedit", item.spec, model, tokenizer)
            rows.append({
                "record": item.index, **item.info,
                "derived": [{"prompt": r.prompt.format(r.subject), "new": r.target_new, "old": r.target_true,
                             "rule": r.derived.rule, "evidence": r.derived.evidence} for r in derived],
                "notes": list(notes)})
            if derived:
                with_derived.append(BenchCase(item.case.case_id, item.case.requests + tuple(derived)))
            print(f"record {item.index}: {len(derived)} derived", flush=True)
    results: dict[str, Any] = {
        "model": args.model, "method": args.method, "benchmark": benchmark, "n_records": len(items),
        "hparams": resolved_json(args.method, model, hp),
        "threads": args.threads, "derive_seconds": round(time.perf_counter() - started, 1),
        "derived_edits": sum(len(r["derived"]) for r in rows),
        "records_with_derived": [r["record"] for r in rows if r["derived"]], "records": rows, "runs": {}}
    chosen_ids = {c.case_id for c in with_derived}
    plain = [item.case for item in items]
    explicit_cases = [c for c in plain if c.case_id in chosen_ids] if args.only_derived else plain
    results["only_derived"] = args.only_derived
    results["runs"] = kept_runs(args, name, results)
    save(name, results, args.results_dir)
    pre_scores: dict[str, Any] = {}   # the explicit edits' pre-edit scores, reused by the second run
    for label, cases in (("explicit", explicit_cases), ("derived_only", with_derived)):
        if not cases or label in results["runs"]:
            continue
        result = run_bench(model, tokenizer, benchmark, cases, editor, hp, fingerprint=loaded.fingerprint,
                           progress=True, pre_scores=pre_scores)
        pre_scores = dict(result.pre_scores)
        results["runs"][label] = {
            "pre_metrics": {k: result.report.pre_metrics.get(k) for k in keys},
            "edit_seconds": round(result.edit_seconds, 1), "wall_seconds": round(result.wall_seconds, 1),
            "rows": {row.edit_id: {k: row.metrics.get(k) for k in keys} for row in result.report.rows}}
        save(name, results, args.results_dir)  # partial results (with each edit's row) after each run

    def table(label: str) -> dict[str, dict[str, Any]]:
        rows = results["runs"].get(label, {}).get("rows", {})
        return {edit_id: {"edit_id": edit_id, "metrics": metrics} for edit_id, metrics in rows.items()}

    explicit_rows, derived_rows = table("explicit"), table("derived_only")
    ids = [c.requests[0].edit_id for c in explicit_cases]
    subset = [c.requests[0].edit_id for c in with_derived]
    results["metrics"] = {
        "explicit_on_derived_records": mean_rows([explicit_rows[i] for i in subset], keys),
        "derived_on_derived_records": mean_rows([derived_rows[i] for i in subset], keys),
        "pre": {k: results["runs"]["explicit"]["pre_metrics"].get(k) for k in keys}}
    if not args.only_derived:
        results["metrics"]["explicit"] = mean_rows([explicit_rows[i] for i in ids], keys)
        results["metrics"]["derived"] = mean_rows([derived_rows.get(i, explicit_rows[i]) for i in ids], keys)
    save(name, results, args.results_dir)
    for label, values in results["metrics"].items():
        print(f"{label:28s} " + "  ".join(f"{k}={v:.3f}" for k, v in values.items() if v is not None))
    print(f"{results['derived_edits']} derived edits on {len(subset)} of {len(items)} records")
    return results


if __name__ == "__main__":
    main()

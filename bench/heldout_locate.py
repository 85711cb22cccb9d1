"""Held-out CounterFact records for the locate-and-patch methods, one record at a time.

Each record is edited alone from the base weights (as ``kvc bench --batch 1``) and its
row is saved as soon as it is scored, so a stopped run keeps what it measured and a rerun
skips the (method, record) pairs already in ``bench/results/<name>.json``. The summary
per method is the mean over its records of each metric, teacher-forced (efficacy,
paraphrase, neighbourhood: the CounterFact definitions) beside generative reliability
(greedy decoding reaches the new object).

    OMP_NUM_THREADS=1 nice -n 5 python bench/heldout_locate.py --name heldout_locate \
        --start 200 --n 10 --methods rome pmet tpatcher calinet
    OMP_NUM_THREADS=1 nice -n 5 python bench/heldout_locate.py --name heldout_locate \
        --start 200 --n 4 --methods kn --hparams kn='{"ig_steps": 5, "prompts": 1, "layers": [15, ..., 29]}'
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from common import RESULTS, hparam_overrides, parser, save, setup

NAMES = {"efficacy": "reliability_cf", "paraphrase": "generalization_cf", "neighbourhood": "locality_cf",
         "gen_reliability": "gen_reliability", "gen_generalization": "gen_generalization",
         "delta_bytes": "delta_bytes"}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """method -> {n, records, mean post metrics, mean pre metrics, median seconds per edit}."""
    out: dict[str, Any] = {}
    for method in sorted({r["method"] for r in rows}):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["record"])
        post = {k: statistics.fmean(r["post"][k] for r in mine if k in r["post"]) for k in NAMES
                if any(k in r["post"] for r in mine)}
        pre = {k: statistics.fmean(r["pre"][k] for r in mine if k in r["pre"]) for k in NAMES
               if any(k in r["pre"] for r in mine)}
        out[method] = {"n": len(mine), "records": [r["record"] for r in mine], "post": post, "pre": pre,
                       "median_edit_seconds": statistics.median(r["edit_seconds"] for r in mine),
                       "hparams": mine[0]["hparams"]}
    return out


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--name", default="heldout_locate")
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--start", type=int, default=200)
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--hparams", nargs="*", default=[], help="METHOD=JSON overrides")
    p.add_argument("--given-neighbours", type=int, default=0,
                   help="of CounterFact's 10 neighbourhood prompts, the last K are given to the editor (T-Patcher "
                        "and CaliNet train against them) and not scored")
    args = p.parse_args()
    setup(args)
    import torch

    from kedit_vc.editors.base import get_editor
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.models import load_model
    from kedit_vc.ops.bench import run_bench

    overrides = hparam_overrides(args.hparams)
    path = RESULTS / f"{args.name}.json"
    rows: list[dict[str, Any]] = json.loads(path.read_text())["rows"] if path.exists() else []
    done = {(r["method"], r["record"]) for r in rows}
    lm = load_model(args.model)
    cases = load_cases("counterfact", args.n, skip=args.start)
    for method in args.methods:
        hp = build_hparams(method, overrides.get(method, {}))
        for offset, case in enumerate(cases):
            record = args.start + offset
            if (method, record) in done:
                continue
            result = run_bench(lm.model, lm.tokenizer, "counterfact", [case], get_editor(method), hp,
                               fingerprint=lm.fingerprint, given_neighbours=args.given_neighbours)
            report = result.report
            row = {"method": method, "record": record, "edit_seconds": result.median_edit_seconds,
                   "hparams": overrides.get(method, {}), "given_neighbours": args.given_neighbours,
                   "post": {k: report.metrics[v] for k, v in NAMES.items() if v in report.metrics},
                   "pre": {k: report.pre_metrics[v] for k, v in NAMES.items() if v in report.pre_metrics}}
            rows.append(row)
            print(json.dumps(row), flush=True)
            rows = merged(path, rows)
            save(args.name, {"benchmark": "counterfact", "model": args.model, "threads": torch.get_num_threads(),
                             "rows": rows, "summary": summary(rows)})


def merged(path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` plus the rows another run (say, of another method) saved to ``path`` since
    this one started, so two runs on one results file keep each other's rows."""
    ours = {(r["method"], r["record"]) for r in rows}
    saved = json.loads(path.read_text())["rows"] if path.exists() else []
    return rows + [r for r in saved if (r["method"], r["record"]) not in ours]


if __name__ == "__main__":
    main()

"""Sweep one hyperparameter of one editor on CounterFact development records.

Records 400.. of counterfact_500.json are the development set (the reported benchmarks
use the first 100), so a default is not tuned on what it is judged on. Each value edits
every record alone from the base weights (as ``kvc bench``) and reports the CounterFact
scores beside the pre-edit ones.

    python bench/sweep_hparam.py --method ft --param norm_constraint --values 5e-4,2e-3,5e-3,2e-2 --n 10
"""

from __future__ import annotations

import argparse
import json

from common import save

from kedit_vc.editors.base import get_editor
from kedit_vc.editors.registry import build_hparams
from kedit_vc.eval.datasets import load_cases
from kedit_vc.models import load_model
from kedit_vc.ops.bench import run_bench

CF_NAMES = {"efficacy": "reliability_cf", "paraphrase": "generalization_cf",
            "neighbourhood": "locality_cf"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True)
    parser.add_argument("--param", required=True)
    parser.add_argument("--values", required=True, help="comma-separated JSON values")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--start", type=int, default=400)
    args = parser.parse_args()
    values = [json.loads(v) for v in args.values.split(",")]
    lm = load_model("smollm2")
    cases = load_cases("counterfact")[args.start:args.start + args.n]
    rows, pre = [], {}
    for value in values:
        hp = build_hparams(args.method, {args.param: value})
        result = run_bench(lm.model, lm.tokenizer, "counterfact", cases, get_editor(args.method), hp,
                           fingerprint=lm.fingerprint)
        pre = {name: result.report.pre_metrics[key] for name, key in CF_NAMES.items()}
        row = {args.param: value, **{name: result.report.metrics[key] for name, key in CF_NAMES.items()},
               "median_edit_seconds": result.median_edit_seconds}
        rows.append(row)
        print("  ".join(f"{k} {v:.4g}" for k, v in row.items()), flush=True)
        path = save(f"sweep_{args.method}_{args.param}", {
            "method": args.method, "param": args.param, "records": f"{args.start}..{args.start + args.n - 1}",
            "rows": rows, "pre": pre})
    print(f"saved {path}")


if __name__ == "__main__":
    main()

"""Sweep settings of a locate-then-edit method (PMET, KN) on CounterFact dev records.

Records 450..469 of counterfact_500.json are this sweep's development set (never
reported: the measured runs use 0..99 and 200..229). Each configuration edits every record alone
from the base weights (as ``kvc bench``) and is saved as it finishes to
``bench/results/<method>_sweep.json``; a rerun skips configurations already there.

    python bench/sweep_locate.py --method pmet --n 10 \
        --configs '{"mom2_weight": 5000}' '{"mom2_weight": 20000}'
    python bench/sweep_locate.py --model gemma3-270m --method tpatcher --n 5 --given-neighbours 5 \
        --name tpatcher_sweep_gemma --configs '{}' '{"template_memory": 0}'
"""

from __future__ import annotations

import json

from common import RESULTS, parser, save, setup

from kedit_vc.editors.base import get_editor
from kedit_vc.editors.registry import build_hparams
from kedit_vc.eval.datasets import load_cases
from kedit_vc.models import load_model
from kedit_vc.ops.bench import run_bench

NAMES = {"efficacy": "reliability_cf", "paraphrase": "generalization_cf",
         "neighbourhood": "locality_cf", "gen_reliability": "gen_reliability"}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--method", required=True)
    p.add_argument("--configs", nargs="+", required=True, help="JSON objects of hyperparameters")
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--start", type=int, default=450)
    p.add_argument("--given-neighbours", type=int, default=0,
                   help="the last K neighbourhood prompts go to the editor and are not scored")
    p.add_argument("--name", default=None, help="results file (default <method>_sweep)")
    args = p.parse_args()
    setup(args)
    name = args.name or f"{args.method}_sweep"
    path = RESULTS / f"{name}.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    done = {json.dumps(r["config"], sort_keys=True) for r in rows}
    lm = load_model(args.model)
    cases = load_cases("counterfact", args.n, skip=args.start)
    pre: dict[str, float] = {}
    for text in args.configs:
        config = json.loads(text)
        if json.dumps(config, sort_keys=True) in done:
            continue
        hp = build_hparams(args.method, config)
        result = run_bench(lm.model, lm.tokenizer, "counterfact", cases, get_editor(args.method), hp,
                           fingerprint=lm.fingerprint, progress=True,
                           given_neighbours=args.given_neighbours)
        pre = {k: result.report.pre_metrics[v] for k, v in NAMES.items() if v in result.report.pre_metrics}
        row = {"config": config, **{k: result.report.metrics[v] for k, v in NAMES.items()},
               "median_edit_seconds": result.median_edit_seconds}
        rows.append(row)
        print(json.dumps(row), flush=True)
        save(name, {"method": args.method, "model": args.model,
                    "records": f"{args.start}..{args.start + args.n - 1}",
                    "given_neighbours": args.given_neighbours,
                    "threads": __import__("torch").get_num_threads(), "rows": rows, "pre": pre})


if __name__ == "__main__":
    main()

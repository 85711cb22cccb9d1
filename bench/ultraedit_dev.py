"""UltraEdit's hyperparameters on dev records (never the reported ones), one batch each.

Dev records: counterfact_edit_5k.json indices 4000.. (reports use 0..999 and 0..4999 in
commits of 100, so the tuned records overlap only the full 5k run, said in its report).
For each setting, all records are edited as one batch, scored (CounterFact definitions,
prefixed and raw prompts), and the weights restored. Writes ultraedit_dev_sweep.json.

    OMP_NUM_THREADS=1 python bench/ultraedit_dev.py --n 100 --lr 1e-5,1e-4,1e-3
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from common import parser, save, setup

METRICS = ("reliability_cf", "generalization_cf", "locality_cf",
           "raw_reliability_cf", "raw_generalization_cf", "raw_locality_cf")


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--start", type=int, default=4000)
    p.add_argument("--lr", default="1e-4")
    p.add_argument("--modules", default="mlp_in", help="';'-separated choices, each a ','-list")
    p.add_argument("--layers", default="", help="';'-separated layer lists (empty: the default)")
    p.add_argument("--raw-copies", default="1", help="'1', '0' or '1,0'")
    p.add_argument("--tokens", default="all", help="'all', 'answer' or 'all,answer'")
    p.add_argument("--tag", default="")
    args = p.parse_args()
    setup(args)
    import torch

    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.eval import score_requests, summarize
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.models import load_model

    lm = load_model(args.model, progress=False)
    requests = [r for c in load_cases("counterfact5k")[args.start:args.start + args.n] for r in c.requests]
    pre = score_requests(lm.model, lm.tokenizer, requests, prompts="both")
    rows: list[dict[str, Any]] = []
    layer_choices: list[Any] = ([None] if not args.layers
                                else [[int(x) for x in c.split(",")] for c in args.layers.split(";")])
    grid = itertools.product(floats(args.lr), [tuple(m.split(",")) for m in args.modules.split(";")],
                             layer_choices, [bool(int(x)) for x in args.raw_copies.split(",")],
                             args.tokens.split(","))
    params = dict(lm.model.named_parameters())
    for lr, modules, layers, raw, tokens in grid:
        overrides: dict[str, Any] = {"lr": lr, "modules": list(modules), "raw_copies": raw, "tokens": tokens}
        if layers is not None:
            overrides["layers"] = layers
        hp = build_hparams("ultraedit", overrides)
        began = time.perf_counter()
        result = get_editor("ultraedit").edit(lm.model, lm.tokenizer, requests, hp,
                                             EditContext(fingerprint=lm.fingerprint, progress=False))
        seconds = time.perf_counter() - began
        saved = {n: params[n].detach().clone() for n in result.delta.updates}
        result.delta.apply(lm.model)
        post = score_requests(lm.model, lm.tokenizer, requests, prompts="both")
        with torch.no_grad():
            for n, value in saved.items():
                params[n].copy_(value)
        report = summarize(post, pre)
        row = {"hparams": overrides, "seconds": round(seconds, 2),
               "seconds_per_fact": round(seconds / len(requests), 3),
               "post": {m: report.metrics.get(m) for m in METRICS},
               "pre": {m: report.pre_metrics.get(m) for m in METRICS}, "info": dict(result.info)}
        rows.append(row)
        print(json.dumps({"hp": overrides, "s/fact": row["seconds_per_fact"],
                          **{m: round(v, 3) for m, v in row["post"].items() if v is not None}}), flush=True)
        save(f"ultraedit_dev_sweep{args.tag}", {"model": args.model, "start": args.start, "n": len(requests),
                                                "rows": rows}, args.results_dir)


if __name__ == "__main__":
    main()

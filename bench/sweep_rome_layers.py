"""Which layer should ROME edit in SmolLM2? A small sweep on CounterFact dev records.

Records 400.. of counterfact_500.json serve as the development set (the reported
benchmarks use the first 100), so the default is not tuned on what it is judged on.
Statistics for all swept layers are collected in one pass first.

    python bench/sweep_rome_layers.py --layers 2,4,6,8 --n 12
"""

from __future__ import annotations

import argparse

from common import save

from kedit_vc.editors.base import get_editor
from kedit_vc.editors.common.hparams import STATS_TOKENS
from kedit_vc.editors.registry import build_hparams
from kedit_vc.eval.datasets import load_cases
from kedit_vc.models import load_model
from kedit_vc.ops.bench import run_bench
from kedit_vc.stats import key_second_moments

#: CounterFact's names -> our registered metrics (see kedit_vc/eval/registry.py).
CF_NAMES = {"efficacy": "reliability_cf", "paraphrase": "generalization_cf",
            "neighbourhood": "locality_cf"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", default="2,4,6,8")
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--start", type=int, default=400)
    parser.add_argument("--stats-tokens", type=int, default=STATS_TOKENS)
    args = parser.parse_args()
    layers = [int(x) for x in args.layers.split(",")]
    lm = load_model("smollm2")
    key_second_moments(lm.model, lm.tokenizer, lm.fingerprint, layers, args.stats_tokens)
    cases = load_cases("counterfact")[args.start:args.start + args.n]
    rows = {}
    for layer in layers:
        hp = build_hparams("rome", {"layer": layer, "stats_tokens": args.stats_tokens})
        result = run_bench(lm.model, lm.tokenizer, "counterfact", cases, get_editor("rome"), hp,
                           fingerprint=lm.fingerprint)
        metrics, pre = result.report.metrics, result.report.pre_metrics
        rows[layer] = {name: metrics[key] for name, key in CF_NAMES.items()}
        rows[layer]["seconds_per_edit"] = result.edit_seconds / len(cases)
        print(f"layer {layer:2d}: " + "  ".join(f"{k} {v:.3f}" for k, v in rows[layer].items()), flush=True)
        # Saved after every layer, so an interrupted sweep keeps what it measured.
        path = save("sweep_rome_layers", {"records": f"{args.start}..{args.start + args.n - 1}",
                                           "stats_tokens": args.stats_tokens, "layers": rows,
                                           "pre": {name: pre[key] for name, key in CF_NAMES.items()}})
    print(f"saved {path}")


if __name__ == "__main__":
    main()

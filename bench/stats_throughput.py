"""Covariance statistics: one pass for k layers against k separate passes (the peer's way).

``key_second_moments`` hooks every requested layer during one pass over the corpus
(self-sampled text by default, or ``$KVC_STATS_TEXT``/``--corpus``). The baseline, in
the same run, computes the same layers one pass per layer. Both write to a fresh
temporary statistics folder, so computation is measured, never a cache hit. Reported:
tokens per second, seconds per layer, peak RSS (reset before each pass, model included),
and the largest difference between the two ways' matrices (same seeded tokens: ~0).

    python bench/stats_throughput.py --tokens 4000 --layers 2,3,4,5,6
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

from common import ints, mib, parser, peak_rss_bytes, reset_peak_rss, save, setup, table, timer

from kedit_vc.models import load_model
from kedit_vc.stats import key_second_moments


def build_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--tokens", type=int, default=4000, help="tokens per pass")
    p.add_argument("--layers", type=ints, default=[2, 3, 4, 5, 6])
    p.add_argument("--corpus", default=None, help="a text file or folder (default: self-sampled text)")
    return p.parse_args(argv)


def one_pass(lm: Any, layers: list[int], tokens: int, corpus: str | None) -> tuple[dict[str, Any], dict]:
    with tempfile.TemporaryDirectory(prefix="kvc-bench-stats-") as stats_dir:
        reset_peak_rss()
        with timer() as t:
            mom2 = key_second_moments(lm.model, lm.tokenizer, lm.fingerprint, layers, tokens, corpus=corpus,
                                      stats_dir=stats_dir, progress=False)
    return {"layers": layers, "seconds": t["s"], "peak_rss_bytes": peak_rss_bytes()}, mom2


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_args(argv)
    setup(args)
    lm = load_model(args.model, progress=False)
    k = len(args.layers)
    joint, joint_mom2 = one_pass(lm, args.layers, args.tokens, args.corpus)
    separate = []
    worst = 0.0
    for layer in args.layers:
        row, mom2 = one_pass(lm, [layer], args.tokens, args.corpus)
        separate.append(row)
        worst = max(worst, float((mom2[layer] - joint_mom2[layer]).abs().max()))
        print(f"layer {layer} alone: {row['seconds']:.1f}s", flush=True)
    sep_seconds = sum(r["seconds"] for r in separate)
    sep_peak = max(r["peak_rss_bytes"] for r in separate)
    summary = {
        "one_pass": {"seconds": joint["seconds"], "seconds_per_layer": joint["seconds"] / k,
                     "tokens_per_second": args.tokens / joint["seconds"],
                     "layer_tokens_per_second": args.tokens * k / joint["seconds"],
                     "peak_rss_bytes": joint["peak_rss_bytes"]},
        "separate_passes": {"seconds": sep_seconds, "seconds_per_layer": sep_seconds / k,
                            "tokens_per_second": args.tokens * k / sep_seconds,
                            "layer_tokens_per_second": args.tokens * k / sep_seconds,
                            "peak_rss_bytes": sep_peak},
    }
    speedup = sep_seconds / joint["seconds"]
    print()
    print(table(["way", "passes", "seconds", "s per layer", "corpus tokens/s", "layer-tokens/s", "peak RSS MiB"],
                [["one pass, all layers", 1, *[summary["one_pass"][key] for key in
                  ("seconds", "seconds_per_layer", "tokens_per_second", "layer_tokens_per_second")],
                  mib(joint["peak_rss_bytes"])],
                 ["one pass per layer", k, *[summary["separate_passes"][key] for key in
                  ("seconds", "seconds_per_layer", "tokens_per_second", "layer_tokens_per_second")],
                  mib(sep_peak)]]))
    print(f"\none pass is {speedup:.2f}x faster for {k} layers; max |difference| of the matrices {worst:.2e}")
    payload = {"model": args.model, "tokens": args.tokens, "layers": args.layers,
               "corpus": args.corpus or "self-sampled (or $KVC_STATS_TEXT)", **summary,
               "separate_rows": separate, "speedup": speedup, "max_abs_difference": worst}
    path = save("stats_throughput", payload, args.results_dir)
    print(f"\nsaved {path}")
    return payload


if __name__ == "__main__":
    main()

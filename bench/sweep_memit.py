"""Which λ (``mom2_weight``), layers and clamp should MEMIT use on SmolLM2? A batch sweep.

Why λ matters so much on a small model: for one key ``k`` the update of one layer delivers
the fraction ``a / (1 + a)`` of its residual, ``a = kᵀ(λC)⁻¹k``. SmolLM2's subject keys
have ``kᵀC⁻¹k`` ≈ 2,000–17,000 (d_mlp = 1536), so GPT-J's λ = 15,000 (d_mlp = 16,384)
delivers well under half of each layer's share.

The targets ``z`` do not depend on λ, so they are optimised once per (layers, clamp) and
every λ re-uses them: only the layer-by-layer solve and the evaluation run again.
Records 400.. of counterfact_500.json are the development set (reports use the first 100).

    python bench/sweep_memit.py --n 20 --weights 500,1000,2000,5000 --layer-ranges 2-6
"""

from __future__ import annotations

import argparse

from common import save

from kedit_vc.editors.common.layered import compute_z_targets, spread_over_layers
from kedit_vc.editors.common.templates import context_templates
from kedit_vc.editors.memit.algorithm import memit_layer_update
from kedit_vc.editors.registry import build_hparams
from kedit_vc.eval import score_requests, summarize
from kedit_vc.eval.datasets import load_cases
from kedit_vc.models import load_model
from kedit_vc.stats import key_second_moments

CF_NAMES = {"efficacy": "reliability_cf", "paraphrase": "generalization_cf",
            "neighbourhood": "locality_cf"}


def _range(text: str) -> tuple[int, ...]:
    low, high = (int(x) for x in text.split("-"))
    return tuple(range(low, high + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="facts in the one batch")
    parser.add_argument("--start", type=int, default=400)
    parser.add_argument("--weights", default="500,1000,2000,5000", help="λ values (mom2_weight)")
    parser.add_argument("--layer-ranges", default="2-6", help="comma-separated LOW-HIGH ranges")
    parser.add_argument("--clamps", default="4.0")
    parser.add_argument("--stats-tokens", type=int, default=50_000)
    args = parser.parse_args()
    weights = [float(x) for x in args.weights.split(",")]
    ranges = [_range(x) for x in args.layer_ranges.split(",")]
    clamps = [float(x) for x in args.clamps.split(",")]

    lm = load_model("smollm2")
    model, tok = lm.model, lm.tokenizer
    mom2 = key_second_moments(model, tok, lm.fingerprint, sorted({layer for r in ranges for layer in r}),
                              args.stats_tokens, progress=True)
    cases = load_cases("counterfact")[args.start:args.start + args.n]
    requests = [r for c in cases for r in c.requests]
    pre = score_requests(model, tok, requests)
    pre_summary = summarize(pre, pre).pre_metrics
    rows = []
    for layers in ranges:
        for clamp in clamps:
            hp = build_hparams("memit", {"layers": layers, "clamp_norm_factor": clamp,
                                         "stats_tokens": args.stats_tokens})
            templates = context_templates(model, tok, hp.context_templates, hp.context_length)
            targets, _ = compute_z_targets(model, tok, requests, layers[-1], templates, hp, progress=True)
            for weight in weights:
                def solver(layer, keys, residual, weight=weight):  # noqa: ANN001, ANN202
                    return memit_layer_update(keys, residual, mom2[layer], weight)

                delta, _ = spread_over_layers(model, tok, requests, layers, targets, templates, solver)
                delta.apply(model)
                try:
                    post = summarize(score_requests(model, tok, requests), pre).metrics
                finally:
                    delta.inverse().apply(model)
                row = {"layers": f"{layers[0]}-{layers[-1]}", "clamp": clamp, "mom2_weight": weight,
                       **{name: post[key] for name, key in CF_NAMES.items()}}
                rows.append(row)
                print("  ".join(f"{k} {v}" if isinstance(v, str) else f"{k} {v:.3f}" for k, v in row.items()),
                      flush=True)
                path = save("sweep_memit", {"records": f"{args.start}..{args.start + args.n - 1}",
                                            "batch": args.n, "stats_tokens": args.stats_tokens, "rows": rows,
                                            "pre": {name: pre_summary[key] for name, key in CF_NAMES.items()}})
    print(f"saved {path}")


if __name__ == "__main__":
    main()

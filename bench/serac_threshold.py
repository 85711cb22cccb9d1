"""SERAC's routing threshold, chosen on dev records: how often does each kind of prompt reach it?

SERAC sends a prompt to the counterfactual model when its best scope probability over the
stored edits reaches ``threshold``; below it the base model answers, bit for bit. With many
edits in memory, a neighbour prompt (same relation, another subject) is more likely to reach
the threshold of *some* stored edit, so the threshold that suits 10 edits may route too many
neighbours at 100. This script scores the routing decision itself (the scope probability at
a prompt's last position, the one that decides its first answer token) for every prompt of
dev records against a memory of all of them, at a grid of thresholds:

* in scope: the rewrite prompt and paraphrases routed to their *own* edit;
* out of scope: neighbourhood / locality prompts routed to *any* edit.

The rule, stated before looking: the threshold with the best balanced rate (mean of
paraphrase routing and neighbour rejection, both benchmarks pooled), ties to the lower.
Dev records are disjoint from the classifier's training records (CounterFact 300-449,
zsRE 100-249) and from the reported ones (CounterFact 0-99, zsRE 0-99).

    OMP_NUM_THREADS=1 python bench/serac_threshold.py --classifier 8fb17727

``kvc train serac`` now calibrates a classifier's threshold the same way on its own held-out
records (``editors.serac.classifier.calibrate``); this script checks that choice on records
of neither set.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from common import parser, save, setup

GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)


def arguments() -> Any:
    p = parser(__doc__)
    p.add_argument("--cf-start", type=int, default=450, help="first dev CounterFact record")
    p.add_argument("--zsre-start", type=int, default=250, help="first dev zsRE record")
    p.add_argument("--n", type=int, default=50, help="dev records per benchmark")
    p.add_argument("--classifier", default=None, help="classifier hash prefix or folder (default: newest)")
    p.add_argument("--name", default="serac_threshold", help="results file name")
    return p.parse_args()


def rates(prob: Any, owner: Any, kinds: list[str], threshold: float) -> dict[str, float]:
    """``routing_rates`` per kind of prompt: rewrite and paraphrase routed to their own edit,
    neighbours kept on the base model."""
    from kedit_vc.editors.serac.classifier import routing_rates

    out: dict[str, float] = {}
    for kind in ("rewrite", "paraphrase", "neighbour"):
        idx = [i for i, k in enumerate(kinds) if k == kind]
        if idx:
            inside = torch.full((len(idx),), kind != "neighbour")
            got = routing_rates(prob[idx], owner[idx], inside, threshold)
            out[kind if kind != "neighbour" else "neighbour_rejected"] = float(
                got["in_scope_routed" if kind != "neighbour" else "neighbours_kept"] or 0.0)
    return out


def prompt_kinds(requests: list[Any]) -> list[str]:
    """The kind of each prompt ``features`` encodes, in its order: per record the rewrite, its
    paraphrases, then its neighbours."""
    kinds: list[str] = []
    for r in requests:
        kinds += ["rewrite"] + ["paraphrase" for p in r.probes if p.kind == "paraphrase"]
        kinds += ["neighbour" for p in r.probes if p.kind == "neighbour"]
    return kinds


def joint_features(parts: list[Any]) -> Any:
    """Several sets' ``Features`` as one memory: keys concatenated, prompt states and masks padded
    to the widest, each prompt's owner shifted past the earlier sets' keys."""
    from kedit_vc.editors.serac.classifier import Features

    width = max(f.states.shape[1] for f in parts)
    offsets = [0]
    for f in parts[:-1]:
        offsets.append(offsets[-1] + f.keys.shape[0])
    return Features(
        torch.cat([f.keys for f in parts]),
        torch.cat([torch.nn.functional.pad(f.states, (0, 0, 0, width - f.states.shape[1])) for f in parts]),
        torch.cat([torch.nn.functional.pad(f.mask, (0, width - f.mask.shape[1])) for f in parts]),
        torch.cat([f.owner + offset for f, offset in zip(parts, offsets)]),
        torch.cat([f.positive for f in parts]))


def main() -> None:
    args = arguments()
    setup(args)
    from kedit_vc.editors.base import EditContext, base_fingerprint
    from kedit_vc.editors.serac.classifier import features, find_classifier, routing_probs
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.models import load_model

    lm = load_model(args.model, progress=False)
    classifier = find_classifier(base_fingerprint(lm.model, EditContext(fingerprint=lm.fingerprint)),
                                 args.classifier)
    pooled: list[tuple[Any, Any, list[str]]] = []
    per_benchmark: dict[str, Any] = {}
    for benchmark, start in (("counterfact", args.cf_start), ("zsre", args.zsre_start)):
        requests = [r for case in load_cases(benchmark, args.n, skip=start) for r in case.requests][:args.n]
        feats = features(lm.model, lm.tokenizer, requests, classifier.layer)
        kinds = prompt_kinds(requests)
        pooled.append((feats, requests, kinds))
        prob = routing_probs(classifier.params, feats)
        per_benchmark[benchmark] = {"records": len(requests), "memory": len(requests),
                                    "rates": {str(t): rates(prob, feats.owner, kinds, t) for t in GRID}}
    # Both benchmarks' edits in one memory (the harder case: twice the keys to collide with).
    joint = joint_features([f for f, _, _ in pooled])
    kinds = [k for _, _, ks in pooled for k in ks]
    prob = routing_probs(classifier.params, joint)
    both = {str(t): rates(prob, joint.owner, kinds, t) for t in GRID}
    balanced = {t: (r["paraphrase"] + r["neighbour_rejected"]) / 2 for t, r in both.items()}
    chosen = max(GRID, key=lambda t: (round(balanced[str(t)], 4), -t))
    result = {"model": args.model, "classifier": classifier.hash, "cf_start": args.cf_start,
              "zsre_start": args.zsre_start, "n": args.n, "per_benchmark": per_benchmark,
              "joint_memory": {"memory": int(joint.keys.shape[0]), "rates": both,
                               "balanced": {t: round(b, 4) for t, b in balanced.items()}},
              "chosen_threshold": chosen,
              "rule": "best mean of paraphrase routing and neighbour rejection, joint memory; ties to the lower"}
    print(json.dumps(result, indent=1))
    save(args.name, result, args.results_dir)


if __name__ == "__main__":
    main()

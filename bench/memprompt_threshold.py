"""MemPrompt's cosine threshold at the memory size users reach: chosen on dev records.

MemPrompt puts a stored fact before a query when the query's best cosine to the fact's key
(the state of the fact prompt's last subject token at the retriever's block, against every
query position so far) reaches ``threshold``; below it the query runs unchanged. The default
(0.8) was set on 30 facts; with 100 in memory a neighbour prompt (same relation, another
subject) meets more keys to come close to, and the 100-fact CounterFact run kept only 0.545
of neighbour answers. This script scores the retrieval decision itself (the score at a
prompt's last position, the one that decides its first answer token) for every prompt of dev
records against a memory of all of them, at a grid of thresholds:

* in scope: the rewrite prompt and paraphrases retrieving their *own* fact;
* out of scope: neighbourhood / locality prompts retrieving *any* fact.

The rule, stated before looking: the threshold with the best mean of paraphrase retrieval and
neighbour rejection in the joint memory (every set's facts: 150), ties to the lower. Dev
records: CounterFact 450-499 and zsRE 250-299 (SERAC's dev sets) and CounterFact-5k 4100-4149
(EasyEdit's flat file; no reported run reads them), disjoint from the reported CounterFact
0-99 and zsRE 0-99.

    OMP_NUM_THREADS=1 python bench/memprompt_threshold.py
"""

from __future__ import annotations

import json
from typing import Any

import torch
from common import parser, save, setup
from serac_threshold import joint_features, prompt_kinds, rates

GRID = (0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.96, 0.97, 0.98, 0.99, 0.995)


def arguments() -> Any:
    p = parser(__doc__)
    p.add_argument("--sets", default="counterfact:450:50,counterfact5k:4100:50,zsre:250:50",
                   help="dev records as BENCHMARK:START:N, comma-separated (one joint memory)")
    p.add_argument("--name", default="memprompt_threshold", help="results file name")
    return p.parse_args()


def cosine_scores(feats: Any) -> torch.Tensor:
    """Best cosine over each prompt's real positions against every key: [m, n] (the retriever's
    ``subject`` scores at a prompt's last position)."""
    from kedit_vc.patches.memory.embed import normalized

    keys = normalized(feats.keys)
    rows = []
    for start in range(0, feats.states.shape[0], 256):
        sims = normalized(feats.states[start:start + 256]) @ keys.T                   # [c, t, n]
        sims = sims.masked_fill(~feats.mask[start:start + 256, :, None], -float("inf"))
        rows.append(sims.max(dim=1).values)
    return torch.cat(rows)


def main() -> None:
    args = arguments()
    setup(args)
    from kedit_vc.editors.memprompt.hparams import MemPromptHparams, resolve
    from kedit_vc.editors.serac.classifier import features
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.models import load_model

    lm = load_model(args.model, progress=False)
    hp = resolve(lm.model, MemPromptHparams())
    assert hp.layer is not None
    parts: list[tuple[Any, list[str]]] = []
    per_set: dict[str, Any] = {}
    for item in args.sets.split(","):
        benchmark, start, n = item.split(":")
        requests = [r for case in load_cases(benchmark, int(n), skip=int(start)) for r in case.requests][:int(n)]
        feats = features(lm.model, lm.tokenizer, requests, hp.layer)
        kinds = prompt_kinds(requests)
        parts.append((feats, kinds))
        score = cosine_scores(feats)
        per_set[item] = {"records": len(requests), "rates": {str(t): rates(score, feats.owner, kinds, t) for t in GRID}}
        print(item, json.dumps(per_set[item]["rates"]), flush=True)
    # Every set's facts in one memory: each prompt meets every key.
    joint = joint_features([f for f, _ in parts])
    kinds = [k for _, ks in parts for k in ks]
    score = cosine_scores(joint)
    table = {str(t): rates(score, joint.owner, kinds, t) for t in GRID}
    balanced = {str(t): round((r["paraphrase"] + r["neighbour_rejected"]) / 2, 4) for t, r in table.items()}
    chosen = max(GRID, key=lambda t: (balanced[str(t)], -t))
    result = {"model": args.model, "layer": hp.layer, "retriever": hp.retriever, "sets": args.sets,
              "per_set": per_set, "joint_memory": {"memory": int(joint.keys.shape[0]), "rates": table,
                                                   "balanced": balanced},
              "chosen_threshold": chosen,
              "rule": "best mean of paraphrase retrieval and neighbour rejection, joint memory; ties to the lower"}
    print(json.dumps({"joint": table, "balanced": balanced, "chosen": chosen}, indent=1))
    save(args.name, result, args.results_dir)


if __name__ == "__main__":
    main()

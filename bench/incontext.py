"""IKE and MemPrompt on SmolLM2: N sequential commits into one edit memory, then every edit scored.

CounterFact records ``--cf-start``.. (the shared 500-record file; 200.. are used by no test or
sweep) and zsRE records ``--zsre-start``.. (with portability: the one-hop "New Question";
records 0-49 are those of ``bench/results/zsre50_rome.json``) are edited one per commit, each
commit's memory patch attached before the next edit, as ``kvc commit`` does. Then all edits
are scored with the whole memory live: teacher-forced and generative reliability,
generalization, locality and (zsRE) portability, beside the unedited model's scores.
Costs: seconds per edit, and seconds per query (one next-token forward of a rewrite or
neighbourhood prompt with the memory live, against the plain model). Each CounterFact edit
is scored on its rewrite prompt, 2 paraphrases and ``--neighbours`` neighbourhood prompts.
Results are saved after each (method, benchmark) pair, so a stopped run keeps what it did.
``--benchmarks mquake``: the first ``--n`` MQuAKE-CF cases from ``--mquake-start``, every
edit of a case a commit, then each case's multi-hop questions asked with the whole memory
live (``portability_multihop``: any question answered, teacher-forced and generative).

    OMP_NUM_THREADS=1 python bench/incontext.py --n 50
    OMP_NUM_THREADS=1 python bench/incontext.py --benchmarks mquake --n 100 --methods ike,memprompt --name mquake100
    OMP_NUM_THREADS=1 python bench/incontext.py --methods serac --n 20 --cf-start 0 --neighbours 2 --name serac20
    OMP_NUM_THREADS=1 python bench/incontext.py --methods serac --n 50 --cf-start 0 --name serac50 \
        --hparams serac='{"classifier": "8fb17727"}'

SERAC needs its classifier first (``kvc train serac``; see ``bench/serac.sh``).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from common import hparam_overrides, parser, save, setup

NAME = "incontext"
METRICS = ("reliability_cf", "generalization_cf", "locality_cf", "reliability_acc", "generalization_acc",
           "locality_agree", "portability_acc", "gen_reliability", "gen_generalization", "gen_locality",
           "gen_portability", "gen_locality_agree", "portability_multihop", "gen_portability_multihop")


def arguments() -> Any:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=50, help="edits (sequential commits) per benchmark")
    p.add_argument("--cf-start", type=int, default=200, help="first CounterFact record")
    p.add_argument("--zsre-start", type=int, default=0, help="first zsRE record")
    p.add_argument("--mquake-start", type=int, default=0, help="first MQuAKE-CF case (``--n`` counts cases: "
                                                                 "each commits all its edits)")
    p.add_argument("--neighbours", type=int, default=5, help="CounterFact neighbourhood probes scored per edit")
    p.add_argument("--methods", default="ike,memprompt", help="comma-separated methods")
    p.add_argument("--benchmarks", default="counterfact,zsre", help="comma-separated benchmarks")
    p.add_argument("--queries", type=int, default=20, help="prompts timed for seconds per query")
    p.add_argument("--name", default=NAME, help="results file name (bench/results/<name>.json)")
    p.add_argument("--hparams", nargs="*", default=[],
                   help='METHOD=JSON overrides, e.g. serac=\'{"classifier": "8fb17727"}\' (without one SERAC '
                        "takes a calibrated classifier on the most records, then the newest; the JSON records which)")
    return p.parse_args()


def trimmed(request: Any, neighbours: int) -> Any:
    """``request`` with its first 2 paraphrases and ``neighbours`` neighbourhood prompts; every
    other probe (the rewrite, portability of every kind: MQuAKE's ``multihop`` too) kept."""
    limits = {"paraphrase": 2, "neighbour": neighbours}
    order = ["rewrite", "paraphrase", "neighbour", "hop"]
    order += [k for k in dict.fromkeys(p.kind for p in request.probes) if k not in order]
    kept: list[Any] = []
    for kind in order:
        kept += [p for p in request.probes if p.kind == kind][:limits.get(kind, 10**6)]
    return replace(request, probes=tuple(kept))


def seconds_per_query(model: Any, tokenizer: Any, prompts: list[str]) -> float:
    """Mean wall seconds of one forward (the next token's logits) per prompt."""
    import torch

    from kedit_vc.models.prompting import encode_text

    began = time.perf_counter()
    for prompt in prompts:
        with torch.no_grad():
            model(input_ids=torch.tensor([encode_text(tokenizer, prompt)]), use_cache=False)
    return (time.perf_counter() - began) / len(prompts)


def main() -> None:
    args = arguments()
    setup(args)
    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.registry import build_hparams, resolve_hparams
    from kedit_vc.eval import score_requests, summarize
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.models import load_model
    from kedit_vc.patches.attach import side_patches

    lm = load_model(args.model, progress=False)
    overrides = hparam_overrides(args.hparams)
    results: dict[str, Any] = {}
    starts = {"counterfact": args.cf_start, "zsre": args.zsre_start, "mquake": args.mquake_start}
    for benchmark in args.benchmarks.split(","):
        cases = load_cases(benchmark, args.n, skip=starts[benchmark])
        requests = [trimmed(r, args.neighbours) for case in cases for r in case.requests]
        if benchmark != "mquake":  # one edit per record; a MQuAKE case has 1-4
            requests = requests[:args.n]
        began = time.perf_counter()
        pre = score_requests(lm.model, lm.tokenizer, requests, generative=True)
        pre_seconds = time.perf_counter() - began
        probes = [p.prompt for r in requests for p in r.probes if p.kind in ("rewrite", "neighbour")][:args.queries]
        plain_query = seconds_per_query(lm.model, lm.tokenizer, probes)
        for method in args.methods.split(","):
            side = side_patches(lm.model)
            side.clear()
            editor, hparams = get_editor(method), build_hparams(method, overrides.get(method, {}))
            context = EditContext(fingerprint=lm.fingerprint, progress=False)
            edit_s, attach_s, infos = [], [], []
            for request in requests:
                t0 = time.perf_counter()
                result = editor.edit(lm.model, lm.tokenizer, [request], hparams, context)
                t1 = time.perf_counter()
                side.add(result.patches)
                infos.append(dict(result.info))
                edit_s.append(t1 - t0)
                attach_s.append(time.perf_counter() - t1)
            began = time.perf_counter()
            post = score_requests(lm.model, lm.tokenizer, requests, generative=True)
            eval_seconds = time.perf_counter() - began
            report = summarize(post, pre)
            live_query = seconds_per_query(lm.model, lm.tokenizer, probes)
            side.clear()
            row = {"n": len(requests), "cases": len(cases), "metrics": {m: report.metrics.get(m) for m in METRICS},
                   "pre": {m: report.pre_metrics.get(m) for m in METRICS},
                   "seconds_per_edit": round(sum(edit_s) / len(edit_s), 4),
                   "seconds_attach_mean": round(sum(attach_s) / len(attach_s), 3),
                   "seconds_per_query_plain": round(plain_query, 4), "seconds_per_query_live": round(live_query, 4),
                   "eval_seconds_plain": round(pre_seconds, 1), "eval_seconds_live": round(eval_seconds, 1),
                   "classifier": infos[-1].get("classifier") if infos else None,
                   "resolved_hparams": {k: v for k, v in vars(resolve_hparams(method, lm.model, hparams)).items()}}
            results[f"{method}/{benchmark}"] = row
            print(json.dumps({"run": f"{method}/{benchmark}", **{k: v for k, v in row.items() if k != "pre"}},
                             default=str), flush=True)
            save(args.name, {"model": args.model, "threads": args.threads, "n": args.n, "cf_start": args.cf_start,
                        "zsre_start": args.zsre_start, "mquake_start": args.mquake_start,
                        "neighbours": args.neighbours, "results": results,
                        "protocol": "sequential commits into one memory, all edits scored at the end"},
                 args.results_dir)


if __name__ == "__main__":
    main()

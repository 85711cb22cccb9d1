"""Train a learned editor (MEND or KE) on SmolLM2, then edit held-out CounterFact or zsRE records.

Training uses ``counterfact_500.json`` facts ``held_out..held_out+train`` (never the first
``held_out``, which are evaluated: CounterFact 0..n-1, the records
``counterfact100_rome.json`` used). Training is cached and resumable
(``kedit_vc.ops.train_editor``): a rerun after a kill continues. Each held-out record is
then edited alone from the base weights and scored as ``kvc bench`` scores (both prompt
forms, generative metrics), or ``--batch`` records at a time (one network call edits the
batch). ``--benchmark zsre`` edits zsRE 0..n-1 with the same CounterFact-trained editor:
no zsRE record is in its training data. The result is saved after training and after evaluation.

    OMP_NUM_THREADS=1 nice -n 5 python bench/mend.py --method mend --steps 400 --n 50
    OMP_NUM_THREADS=1 python bench/mend.py --method ke --benchmark zsre --n 100
    OMP_NUM_THREADS=1 python bench/mend.py --method mend --n 100 --batch 10
    OMP_NUM_THREADS=1 python bench/mend.py --method mend --benchmark zsre --n 100 --train 800 --tag _cfzsre \
        --data /work/shared/data/counterfact_500.json /work/shared/data/zsre_eval_portability_1037.json \
        --out ~/.cache/kedit_vc/editors/mend-cf-zsre
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from common import RESULTS, parser, save, setup

from kedit_vc.editors.base import get_editor
from kedit_vc.editors.common.metatrain import TrainSettings
from kedit_vc.editors.registry import build_hparams
from kedit_vc.eval.datasets import load_cases
from kedit_vc.models import load_model
from kedit_vc.ops.bench import run_bench
from kedit_vc.ops.train_editor import train_editor

DATA = "/work/shared/data/counterfact_500.json"
NAMES = {
    "counterfact": {"efficacy": "reliability_cf", "paraphrase": "generalization_cf",
                    "neighbourhood": "locality_cf", "gen_reliability": "gen_reliability"},
    "zsre": {"reliability": "reliability_acc", "generalization": "generalization_acc",
             "locality": "locality_agree", "portability": "portability_acc", "gen_reliability": "gen_reliability"},
}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--method", default="mend", choices=["mend", "ke"])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--edits-per-step", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train", type=int, default=400, help="training facts (after the held-out ones)")
    p.add_argument("--held-out", type=int, default=100)
    p.add_argument("--n", type=int, default=50, help="held-out records evaluated (0..n-1 of --benchmark)")
    p.add_argument("--benchmark", default="counterfact", choices=sorted(NAMES), help="records edited and scored")
    p.add_argument("--batch", type=int, default=1, help="records edited together in one network call")
    p.add_argument("--data", nargs="+", default=[DATA], help="training files (the first --held-out of each held out)")
    p.add_argument("--out", default=None, help="train into this folder and edit with it (default: the cache's)")
    p.add_argument("--tag", default="", help="suffix of the result file name")
    args = p.parse_args()
    setup(args)
    name = f"{args.benchmark}{args.n}_{args.method}" + (f"_batch{args.batch}" if args.batch > 1 else "") + args.tag
    lm = load_model(args.model, progress=False)
    settings = TrainSettings(steps=args.steps, edits_per_step=args.edits_per_step, lr=args.lr)
    started = time.perf_counter()
    cpu = time.process_time()
    trained = train_editor(args.method, args.model, list(args.data), {}, settings, held_out=args.held_out,
                           limit=args.train, out=args.out, progress=False, loaded=lm)
    training = {k: v for k, v in trained.record["training"].items() if k != "train_edit_ids"}
    training.update({"editor": str(trained.folder), "editor_hash": trained.editor_hash, "reused": trained.reused,
                     "wall_seconds_this_process": round(time.perf_counter() - started, 1),
                     "cpu_seconds_this_process": round(time.process_time() - cpu, 1)})
    payload = {"benchmark": args.benchmark, "method": args.method, "model": args.model, "training": training,
               "threads": args.threads, "batch": args.batch, "sequential": False,
               "training_held_out": [f"{Path(d).name} 0..{args.held_out - 1}" for d in args.data]}
    save(name, payload)
    cases = load_cases(args.benchmark, args.n)
    hp = build_hparams(args.method, {"editor": args.out} if args.out else {})
    result = run_bench(lm.model, lm.tokenizer, args.benchmark, cases, get_editor(args.method), hp,
                       batch=args.batch, fingerprint=lm.fingerprint)
    summary = result.summary() if hasattr(result, "summary") else {}
    metrics = result.report.to_json()["metrics"]
    payload.update({"n_cases": args.n, "edit_seconds": result.edit_seconds,
                    "median_edit_seconds": result.median_edit_seconds, "wall_seconds": result.wall_seconds,
                    "peak_rss_bytes": result.peak_rss_bytes, "report": result.report.to_json(),
                    "headline": {k: metrics.get(v) for k, v in NAMES[args.benchmark].items()}, "summary": summary})
    rome = RESULTS / ("counterfact100_rome.json" if args.benchmark == "counterfact" else "zsre100_rome.json")
    if rome.exists():
        r = json.loads(rome.read_text())
        payload["rome_median_edit_seconds"] = r["median_edit_seconds"]
        payload["edit_time_ratio_to_rome"] = result.median_edit_seconds / r["median_edit_seconds"]
    print(json.dumps(payload["headline"]), payload.get("edit_time_ratio_to_rome"))
    save(name, payload)


if __name__ == "__main__":
    main()

"""Where a batch commit's time goes: one editor call on N facts under cProfile.

The first ``--n`` records of CounterFact's 5k flat file after ``--skip`` are edited as one
batch (a ``kvc commit --batch-size N`` chunk, from the unedited model: no carried history),
with the method's defaults and any ``--hparam``. Prints wall and process-CPU seconds per fact
and the top functions by cumulative and by own time; writes bench/results/profile_<method><tag>.json.
Nothing is scored: quality lives in the other scripts.

    OMP_NUM_THREADS=1 python bench/profile_edit.py --method ultraedit --n 100
    OMP_NUM_THREADS=1 python bench/profile_edit.py --method alphaedit --n 100 --skip 300
"""

from __future__ import annotations

import cProfile
import os
import time

from common import hparam_overrides, parser, profile_rows, save, setup


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--method", required=True, help="a registered editing method")
    p.add_argument("--n", type=int, default=100, help="facts in the one batch")
    p.add_argument("--skip", type=int, default=0, help="records of counterfact_edit_5k.json skipped first")
    p.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE", help="editor override (JSON value)")
    p.add_argument("--tag", default="", help="suffix of the result file name")
    args = p.parse_args()
    setup(args)
    import torch

    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.registry import build_hparams, resolve_hparams
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.models import load_model

    overrides = hparam_overrides(args.hparam)
    lm = load_model(args.model, progress=False)
    requests = [r for c in load_cases("counterfact5k", n=args.n, skip=args.skip) for r in c.requests]
    hparams = build_hparams(args.method, overrides)
    load_before = os.getloadavg()
    profiler = cProfile.Profile()
    wall, cpu = time.perf_counter(), time.process_time()
    profiler.enable()
    result = get_editor(args.method).edit(lm.model, lm.tokenizer, requests, hparams,
                                          EditContext(fingerprint=lm.fingerprint, progress=False))
    profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    info = {k: v for k, v in result.info.items() if isinstance(v, (int, float, str))}
    row = {"method": args.method, "n": len(requests), "skip": args.skip, "overrides": overrides,
           "resolved_hparams": str(resolve_hparams(args.method, lm.model, hparams)),
           "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "seconds_per_fact": round(wall / len(requests), 3),
           "cpu_seconds_per_fact": round(cpu / len(requests), 3), "threads": torch.get_num_threads(),
           "load_before": load_before, "load_after": os.getloadavg(), "info": info,
           "cumulative": profile_rows(profiler, 30), "own": profile_rows(profiler, 15, by="own_s")}
    print(f"{args.method}: {len(requests)} facts in {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"({cpu / len(requests):.3f} CPU s per fact, {torch.get_num_threads()} thread(s), load {load_before[0]:.1f})")
    for r in row["cumulative"][:20]:
        print(f"  {r['cumulative_s']:9.2f} s cum {r['own_s']:9.2f} s own {r['calls']:8d}  {r['function']}")
    print("by own time:")
    for r in row["own"]:
        print(f"  {r['own_s']:9.2f} s {r['calls']:8d}  {r['function']}")
    print(f"wrote {save(f'profile_{args.method}{args.tag}', row, args.results_dir)}")


if __name__ == "__main__":
    main()

"""Inference cost of live side patches: greedy tokens/s with the first K commits of a saved
sequential run live, against the plain model, measured in the same run.

Issue 17 asks for ``generate`` tokens per second on the plain model and on HEAD with 0, 100
and 500 live memory edits. ``bench/sequential.py --gen-speed`` measures only at the end of
its run; this reads the codebooks / side memories / neurons a run saved (its
``<name>.deltas/`` folder) and measures at each ``--at`` count. Every point times the live
model and then the plain one on the same five rewrite prompts (``common.generate_speed``), so
a change of load between points moves both. Writes ``bench/results/live_speed[_TAG].json``.

    OMP_NUM_THREADS=1 python bench/live_speed.py --from-run bench/results/sequential_wise_n500.deltas \\
        --at 0,100,500 --tag wise_n500
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common import generate_speed, parser, save, saved_patches, setup


def arguments() -> Any:
    p = parser(__doc__)
    p.add_argument("--from-run", required=True, metavar="DIR", help="a sequential.py run's saved deltas folder")
    p.add_argument("--at", default="0,100,500", help="live commit counts to measure, comma-separated")
    p.add_argument("--tokens", type=int, default=32, help="new tokens generated per prompt")
    p.add_argument("--start", type=int, default=0, help="first CounterFact record (its prompts are timed)")
    p.add_argument("--tag", default="", help="suffix of the results file")
    return p.parse_args()


def main() -> None:
    args = arguments()
    setup(args)
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.models import load_model
    from kedit_vc.patches.attach import side_patches

    try:
        counts = sorted({int(x) for x in args.at.split(",") if x.strip()})
    except ValueError:
        raise SystemExit(f"--at {args.at!r}: give commit counts such as 0,100,500") from None
    saved = Path(args.from_run)
    if not (saved / "state.json").is_file():
        raise SystemExit(f"--from-run {saved}: no state.json there (a bench/sequential.py run's .deltas folder)")
    lm = load_model(args.model, progress=False)
    requests = [r for case in load_cases("counterfact")[args.start:args.start + 5] for r in case.requests]
    side = side_patches(lm.model)
    points = []
    for count in counts:
        patches = saved_patches(saved, count)
        side.set(patches)
        point = {"commits": count, "live_patches": len(patches),
                 **generate_speed(lm, side, requests, args.tokens)}
        points.append(point)
        print(json.dumps(point), flush=True)
    side.clear()
    path = save("live_speed" + (f"_{args.tag}" if args.tag else ""), {
        "model": args.model, "run": str(saved), "tokens": args.tokens, "start": args.start, "points": points},
        args.results_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

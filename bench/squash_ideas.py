"""Ways to make a squash of N single-edit ROME commits smaller or re-solved, judged by the squash gate.

On a store of N ROME commits (``bench/squash.py --build-only`` makes it; dev records, e.g.
``--start 450``), each idea's delta is applied to the range's base and scored like the squash
gate does: edits that held at the tip and lose a kept check (``ops/squash.find_losses``),
headline metrics, tensor bytes against the parts', and a free screen first
(``squash_parts.key_errors``: the relative change it makes to what the composition writes at
each part's key). Ideas (``--ideas``):

- ``compose16``: the composition (exact sum of the parts) compacted to float16;
- ``parts``, ``parts16``: joint ROME's closed form on the parts' own keys and targets
  (``ops/squash_parts.py``), float32 and compacted;
- ``svdR``: the composition truncated to rank R (best rank-R approximation); ``svd-R``: rank N-R.

Results are saved after each idea (partial JSON); a rerun skips ideas already measured.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/squash_ideas.py --cache /tmp/sqdev/cache \\
        --start 450 --n 10 --ideas compose16,parts,parts16,svd-1
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from common import RESULTS, parser, save, setup

NAME = "squash_ideas"
HEADLINE = ("reliability", "raw_reliability", "gen_reliability", "generalization", "raw_generalization",
            "neighbourhood", "raw_locality_cf")


def arguments() -> Any:
    p = parser(__doc__)
    p.add_argument("--cache", required=True, help="bench/squash.py's --cache holding rome_<start>_n<N>")
    p.add_argument("--start", type=int, default=450, help="first CounterFact record of the store (default 450)")
    p.add_argument("--n", type=int, default=10, help="commits in the store (default 10)")
    p.add_argument("--ideas", default="compose16,parts,parts16,svd-1")
    p.add_argument("--screen-only", action="store_true", help="only the free key-error screen, no scoring")
    return p.parse_args()


def idea_delta(idea: str, composed: Any, parts: Any, n: int) -> Any:
    from kedit_vc.ops.squash import compact
    from kedit_vc.ops.squash_parts import parts_delta, truncate

    if idea == "compose16":
        return compact(composed)
    if idea in ("parts", "parts16"):
        solved = parts_delta(parts, "parts")
        return solved if idea == "parts" else compact(solved)
    if idea.startswith("svd"):
        rank = int(idea[3:])
        return truncate(composed, n + rank if rank < 0 else rank)
    raise SystemExit(f"unknown idea {idea!r}")


def main() -> None:
    args = arguments()
    setup(args)
    from kedit_vc.eval.report import summarize
    from kedit_vc.ops import Evaluator
    from kedit_vc.ops.history import live_edits
    from kedit_vc.ops.squash import compose_range, delta_sizes, find_losses
    from kedit_vc.ops.squash_parts import key_errors, range_parts
    from kedit_vc.store import open_store

    snapshot = Path(args.cache) / f"rome_{args.start}_n{args.n}"
    work = Path(args.cache) / "scratch" / f"ideas_n{args.n}"
    if not work.exists():
        shutil.copytree(snapshot, work)
    path = Path(args.results_dir or RESULTS) / f"{NAME}.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    rows: list[dict[str, Any]] = [r for r in old.get("rows", [])
                                  if (r.get("start"), r.get("commits")) != (args.start, args.n)
                                  or r["idea"] in args.ideas.split(",")]
    store = open_store(work)
    try:
        chain = store.chain()
        base, tip, inside = chain[0], chain[-1], chain[1:]
        composed, _ = compose_range(store, inside, tip)
        parts = range_parts(store, inside, tip)
        assert parts is not None, "not a range of single-layer ROME commits"
        parts_bytes = sum(store.read_commit(sha).delta().summary().stored_bytes for sha in inside)
        requests = tuple(e.request for e in live_edits(store, tip) if e.sha in inside)
        evaluator = Evaluator(store)
        before = None
        for idea in filter(None, args.ideas.split(",")):
            if any(r["idea"] == idea and r["start"] == args.start and r["commits"] == args.n
                   and ("edits_lost" in r or args.screen_only) for r in rows):
                continue
            delta = idea_delta(idea, composed, parts, args.n)
            errors = key_errors(composed, delta, parts)
            sizes = {k: int(v) for k, v in delta_sizes(delta).items()}
            row: dict[str, Any] = {"idea": idea, "start": args.start, "commits": args.n,
                                   "parts_bytes": int(parts_bytes), **sizes,
                                   "key_error_max": max(errors), "key_error_median": sorted(errors)[len(errors) // 2]}
            if not args.screen_only:
                if before is None:
                    before = evaluator.evaluate(tip, requests)
                started = time.perf_counter()
                evaluator.move_to(base)
                evaluator.weights.apply(delta)
                evaluator.mark_changed()
                after = summarize(evaluator.score_now(requests), before.pre)
                losses = find_losses(requests, before.report, after)
                row.update({
                    "score_seconds": round(time.perf_counter() - started, 2),
                    "held_before": sum(1 for r in before.report.rows if r.metrics.get("reliability") == 1.0),
                    "edits_lost": len({x.edit_id for x in losses}), "checks_lost": [x.to_json() for x in losses],
                    "before": {k: round(before.report.metrics[k], 4) for k in HEADLINE if k in before.report.metrics},
                    "after": {k: round(after.metrics[k], 4) for k in HEADLINE if k in after.metrics}})
            rows = [r for r in rows if not (r["idea"] == idea and r["start"] == args.start
                                            and r["commits"] == args.n)] + [row]
            print(json.dumps(row), flush=True)
            save(NAME, {"model": args.model, "threads": args.threads, "rows": rows}, args.results_dir)
    finally:
        store.close()


if __name__ == "__main__":
    main()

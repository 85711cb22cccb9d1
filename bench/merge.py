"""Merging two branches of 20 commits each, without conflict (issue 21).

Two branches grow from the initial commit, each with ``--per-branch`` one-edit ROME
commits of distinct CounterFact facts (the first 2 x N cases of counterfact_500); then
``main`` merges the other. Timed: growing each branch, ``switch`` both ways, and the
merge (each side's edits scored on its own tip, the union re-solved on the common
ancestor's weights in one call, scored, written), plus a fresh evaluation of the merged
HEAD as the store materialises it. Reliability is reported per side, before (on the
side's own tip) and after (at the merged HEAD).

The default model is the tests' tiny random Llama (built in a temp folder from
tests/conftest.py; its answers are noise, so only the timings say much); ``--model
smollm2`` runs the real model (ROME with the tests' settings), which on one CPU thread
takes about 20 s per edit, so 2 x 20 commits plus the re-solve of 40 is far past ten
minutes: run it with ``--per-branch 3`` there.

    OMP_NUM_THREADS=1 python bench/merge.py                     # tiny model, 2 x 20
    OMP_NUM_THREADS=1 python bench/merge.py --model smollm2 --per-branch 3 --name merge_smollm2
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from common import parser, save, setup

TINY_ROME = "method rome { layer = 1 v_steps = 3 stats_tokens = 2000 context_templates = 2 context_length = 4 }"
REAL_ROME = "method rome { v_steps = 20 stats_tokens = 4000 context_templates = 5 }"


def tiny_model(folder: Path) -> str:
    """The tests' tiny Llama, saved in ``folder``; statistics measured on a seeded word salad."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import random

    from conftest import save_tiny_llama
    from tiny_models import WORDS

    corpus = folder / "corpus.txt"
    rng = random.Random(0)
    corpus.write_text(" ".join(rng.choice(WORDS) for _ in range(6000)), encoding="utf-8")
    os.environ.setdefault("KVC_STATS_TEXT", str(corpus))
    os.environ.setdefault("KVC_CACHE", str(folder / "cache"))
    return str(save_tiny_llama(folder / "model"))


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(model="tiny")
    p.add_argument("--per-branch", type=int, default=20, help="one-edit commits on each branch (default 20)")
    p.add_argument("--name", default="merge", help="results file name (default merge)")
    args = p.parse_args()
    setup(args)

    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.ops import CommitOptions, Evaluator, branches, commit_spec, init, live_edits
    from kedit_vc.ops.merge import merge, spec_line

    work = Path(tempfile.mkdtemp(prefix="kvc-bench-merge-"))
    model = tiny_model(work) if args.model == "tiny" else args.model
    method = TINY_ROME if args.model == "tiny" else REAL_ROME
    cases = load_cases("counterfact", 2 * args.per_branch)
    requests = [case.requests[0] for case in cases]
    sides = {"main": requests[: args.per_branch], "feature": requests[args.per_branch:]}

    store = init(work / "project", model)
    branches.create_branch(store, "feature")
    timings: dict[str, float] = {}
    side_ids: dict[str, list[str]] = {side: [] for side in sides}
    for side, chosen in sides.items():
        began = time.perf_counter()
        branches.switch(store, side)
        for i, request in enumerate(chosen):
            spec = work / f"{side}-{i}.kedit"
            spec.write_text(f"{method}\n{spec_line(request)}\n", encoding="utf-8")
            done = commit_spec(store, spec, CommitOptions(message=f"{side} {i}: {request.subject}"))
            side_ids[side] += [r.edit_id for r in done.plan.requests]
        timings[f"grow_{side}_s"] = time.perf_counter() - began
    for side in ("main", "feature", "main"):
        began = time.perf_counter()
        branches.switch(store, side)
        timings.setdefault(f"switch_to_{side}_s", time.perf_counter() - began)

    began = time.perf_counter()
    result = merge(store, "feature", allow_loss=True)
    timings["merge_s"] = time.perf_counter() - began
    assert result.outcome == "merged" and result.before is not None and result.after is not None

    began = time.perf_counter()
    fresh = Evaluator(store).evaluate("HEAD")
    timings["evaluate_merged_head_s"] = time.perf_counter() - began
    merged_rel = {row.edit_id: row.metrics.get("reliability", 0.0) for row in fresh.report.rows}
    own_rel = {row.edit_id: row.metrics.get("reliability", 0.0) for row in result.before.rows}
    per_side = {}
    for side, ids in side_ids.items():
        per_side[side] = {"own_tip_reliability": round(mean([own_rel[i] for i in ids]), 4),
                          "merged_reliability": round(mean([merged_rel[i] for i in ids]), 4)}
    live = {e.request.edit_id for e in live_edits(store)}
    payload = {
        "model": args.model, "threads": args.threads, "per_branch": args.per_branch, "method": result.method,
        "edits_merged": len(result.requests), "live_after": len(live),
        "all_edits_live": live == {i for ids in side_ids.values() for i in ids},
        "losses": len(result.losses), "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "reliability": per_side, "fsck_problems": store.fsck(),
    }
    store.close()
    path = save(args.name, payload, args.results_dir)
    print(f"{args.model}: merge of 2 x {args.per_branch} one-edit commits ({len(result.requests)} edits, "
          f"re-solved with {result.method}) in {timings['merge_s']:.1f} s")
    for key, value in payload["timings_s"].items():
        print(f"  {key:<28} {value:>9.3f}")
    for side, values in per_side.items():
        print(f"  {side:<8} reliability on its own tip {values['own_tip_reliability']:.3f}, "
              f"at the merged HEAD {values['merged_reliability']:.3f}")
    print(f"saved {path}")


if __name__ == "__main__":
    main()

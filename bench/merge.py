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

``--cached`` (the real model's 2 x 20 run) grows the two branches once in a store kept
under ``--cache`` (default ``~/.cache/kedit_vc/bench_merge2x20``), alternating sides so
that the first K commits of each side exist at any time, with one-edit ROME commits of
CounterFact records ``--start``.. (scored on prefixed prompts only while growing; the merge
scores every form itself). A rerun resumes the growth; ``--build-only`` stops there. The
merge runs on a copy, on branches cut at ``--merge-at`` commits per side (default all),
with ``--strategy`` (default auto); per side and merged it reports the edits' metrics in
both prompt forms and generatively, the seconds of each strategy tried, and auto's choice:

    OMP_NUM_THREADS=1 python bench/merge.py --cached --build-only          # resumable
    OMP_NUM_THREADS=1 python bench/merge.py --cached --name merge_smollm2_2x20
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import parser, save, setup

TINY_ROME = "method rome { layer = 1 v_steps = 3 stats_tokens = 2000 context_templates = 2 context_length = 4 }"
REAL_ROME = "method rome { v_steps = 20 stats_tokens = 4000 context_templates = 5 }"
TINY_HPARAMS = {"layer": 1, "v_steps": 3, "stats_tokens": 2000, "context_templates": 2, "context_length": 4}


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
    p.add_argument("--cached", action="store_true", help="real-model run: branches grown once in --cache")
    p.add_argument("--cache", default=None, help="where --cached keeps its store (default $KVC_CACHE/bench_merge2x20)")
    p.add_argument("--start", type=int, default=200, help="--cached: first CounterFact record (default 200)")
    p.add_argument("--merge-at", type=int, default=None, help="--cached: merge the first K commits of each side")
    p.add_argument("--strategy", default="auto", help="--cached: merge strategy (auto, resolve, compose)")
    p.add_argument("--build-only", action="store_true", help="--cached: only grow (or finish growing) the branches")
    args = p.parse_args()
    setup(args)
    if args.cached:  # default smollm2; --model tiny here is a quick check of the script itself
        if args.model == "tiny" and "--model" not in sys.argv:
            args.model = "smollm2"
        if args.model == "tiny":
            args.model = tiny_model(Path(tempfile.mkdtemp(prefix="kvc-bench-merge-")))
            args.rome = TINY_HPARAMS
        cached(args)
        return

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


# -- the cached real-model run ------------------------------------------------------------

SIDES = ("main", "feature")
#: The metrics printed (the JSON keeps every one): prefixed and raw prompt forms, greedy generation.
HEADLINE = ("reliability", "generalization", "locality", "raw_reliability", "raw_generalization", "raw_locality",
            "gen_reliability", "raw_gen_reliability")


def cache_dir(args: Any) -> Path:
    if args.cache:
        return Path(args.cache)
    return Path(os.environ.get("KVC_CACHE", Path.home() / ".cache" / "kedit_vc")) / "bench_merge2x20"


def side_commits(store: Any, side: str) -> list[str]:
    """The side's own commits after the initial one, oldest first."""
    return list(reversed(store.repo.git.rev_list("--first-parent", side).split()))[1:]


def grow(args: Any, folder: Path) -> dict[str, float]:
    """Alternate one-edit ROME commits on main and feature until each has ``--per-branch``."""
    from kedit_vc.compiler.plan import EditorCall, Plan
    from kedit_vc.eval.datasets import counterfact_case, load_records
    from kedit_vc.ops import Evaluator, branches, init
    from kedit_vc.ops.commit import CommitOptions, commit_plan
    from kedit_vc.store import open_store

    records = load_records("counterfact")[args.start:args.start + 2 * args.per_branch]
    if len(records) < 2 * args.per_branch:
        raise SystemExit(f"only {len(records)} records from {args.start}; lower --start or --per-branch")
    fresh = not (folder / ".kvc").is_dir()
    store = init(folder, args.model) if fresh else open_store(folder)
    if fresh:
        branches.create_branch(store, "feature")
    timings = {"grow_main_s": 0.0, "grow_feature_s": 0.0}
    evaluator = Evaluator(store, prompts="prefixed", generative=False)
    try:
        for i in range(min(args.merge_at or args.per_branch, args.per_branch)):  # a cut needs only its commits
            for number, side in enumerate(SIDES):
                if len(side_commits(store, side)) > i:
                    continue
                branches.switch(store, side)
                index = args.start + number * args.per_branch + i
                (request,) = counterfact_case(records[index - args.start]).requests
                plan = Plan(calls=(EditorCall("rome", dict(getattr(args, "rome", {})), (request,)),))
                began = time.perf_counter()
                result = commit_plan(store, plan, f"# CounterFact record {index} (bench/merge.py)\n",
                                     f"cf{index}.kedit", CommitOptions(message=f"{side} {i}: {request.subject}"),
                                     evaluator=evaluator)
                seconds = time.perf_counter() - began
                timings[f"grow_{side}_s"] += seconds
                print(f"{side} {i + 1}/{args.per_branch} (record {index}) {request.subject!r}: reliability "
                      f"{result.report.rows[0].metrics.get('reliability')} ({seconds:.1f} s)", flush=True)
    finally:
        store.close()
    return timings


def side_means(rows: dict[str, dict[str, float]], ids: list[str]) -> dict[str, float]:
    """Each metric's mean over ``ids`` (rows: edit id -> metrics)."""
    names = sorted({name for i in ids for name in rows.get(i, {})})
    return {name: round(mean([rows[i][name] for i in ids if name in rows.get(i, {})]), 4) for name in names}


def cached(args: Any) -> None:
    """Grow (or finish) the cached branches, then merge a copy cut at ``--merge-at``."""
    from kedit_vc.ops import branches
    from kedit_vc.ops.merge import MergeRefused, merge
    from kedit_vc.store import open_store

    folder = cache_dir(args) / f"rome_{args.start}_2x{args.per_branch}"
    grown = grow(args, folder)
    if args.build_only:
        return
    timings = {f"{name}_this_run": seconds for name, seconds in grown.items()}
    k = args.merge_at or args.per_branch
    work = cache_dir(args) / "scratch"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(folder, work)
    store = open_store(work)
    try:
        ids: dict[str, list[str]] = {}
        for side in SIDES:
            commits = side_commits(store, side)
            if len(commits) < k:
                raise SystemExit(f"{side} has {len(commits)} commits, fewer than --merge-at {k}")
            branches.create_branch(store, f"{side}{k}", commits[k - 1])
            ids[side] = [i for sha in commits[:k] for i in store.read_commit(sha).edit_ids]
            # Build seconds from the commits' own records (a resumed build spans processes).
            spent = [store.read_commit(sha).manifest.get("timings", {}) for sha in commits[:k]]
            timings[f"build_{side}_s"] = sum(t.get("total_s", 0.0) for t in spent)
            timings[f"build_{side}_edit_s"] = sum(t.get("edit_s", 0.0) for t in spent)
        branches.switch(store, f"main{k}")
        began = time.perf_counter()
        try:
            result = merge(store, f"feature{k}", strategy=args.strategy)
            refused = False
        except MergeRefused as error:
            result, refused = error.result, True
        timings["merge_s"] = time.perf_counter() - began
        assert result.before is not None and result.after is not None
        before = {row.edit_id: dict(row.metrics) for row in result.before.rows}
        after = {row.edit_id: dict(row.metrics) for row in result.after.rows}
        payload = {
            "model": args.model, "threads": args.threads, "per_branch": k, "grown_per_branch": args.per_branch,
            "records": [args.start, args.start + 2 * args.per_branch], "method": result.method,
            "strategy_asked": args.strategy, "strategy": result.strategy, "strategy_reason": result.reason,
            "refused": refused, "outcome": result.outcome, "edits_merged": len(result.requests),
            "losses": [loss.to_json() for loss in result.losses],
            "attempts": [dict(a) for a in result.attempts],
            "timings_s": {k2: round(v, 3) for k2, v in timings.items()},
            "per_side": {side: {"own_tip": side_means(before, ids[side]), "merged": side_means(after, ids[side])}
                         for side in SIDES},
            "fsck_problems": store.fsck(), "load_average_after": list(os.getloadavg()),
        }
    finally:
        store.close()
    path = save(args.name, payload, args.results_dir)
    print(f"{args.model}: merge of 2 x {k} one-edit ROME commits: {payload['outcome']} with strategy "
          f"{payload['strategy']} ({payload['strategy_reason']}) in {timings['merge_s']:.1f} s")
    for side in SIDES:
        for where in ("own_tip", "merged"):
            values = payload["per_side"][side][where]
            shown = ", ".join(f"{n} {values[n]:.3f}" for n in HEADLINE if n in values)
            print(f"  {side:<8} {where:<8} {shown}")
    print(f"saved {path}")


if __name__ == "__main__":
    main()

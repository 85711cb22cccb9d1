"""Squash N single-edit ROME commits into one: what it keeps, how long it takes, how big it is.

For each size N (``--sizes 10,50``): a store with N ROME commits, one held-out CounterFact
record each (records ``--start``.. of the shared 500-record file; the reported benchmarks
use the first 100, the sweeps 400..), then ``kvc squash`` of the whole range with each
strategy of ``--methods`` as a dry run (a re-solve by a batch method, or ``compose``: the
range's deltas summed exactly), then ``--real`` (default ``auto``, kvc squash's default: joint
ROME solved from the parts' keys at the tip's targets, compacted, with compose as its fallback)
for real. Per strategy:
reliability, generalization and neighbourhood (teacher-forced, prefixed and raw prompts),
greedy ``gen_reliability``, before and after; how many edits that held lost a kept check;
seconds; the squashed delta's bytes against the sum of the range's delta files, and the
store's size before and after the real squash.

The ROME stores are cached (``--cache``, default ``$KVC_CACHE/bench_squash`` or
``~/.cache/kedit_vc/bench_squash``): one store grows to the largest size and is copied at
each smaller one, so a rerun or a larger size redoes no ROME edit. Results are saved after
each (size, strategy), and a rerun skips rows already in the results file (``--fresh`` to
redo them).

    OMP_NUM_THREADS=1 .venv/bin/python bench/squash.py --sizes 10,50 --methods compose --real auto

Results: ``bench/results/squash.json`` (the default against compose; rows tagged ``--tag s7-tip``
are the default of session 7, untagged rows the earlier default with re-optimised targets);
``bench/results/squash_methods_n10.json`` holds the earlier comparison of re-solve methods at 10
(compose, memit, memit at one layer, alphaedit, ultraedit), made with
``--sizes 10 --methods "compose,memit,ultraedit,memit:layers=[4],alphaedit" --real compose``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from common import RESULTS, ints, parser, save, setup

NAME = "squash"
HEADLINE = ("reliability", "raw_reliability", "efficacy", "raw_reliability_cf", "gen_reliability",
            "raw_gen_reliability", "generalization", "raw_generalization", "paraphrase", "raw_generalization_cf",
            "neighbourhood", "raw_locality_cf", "locality", "raw_locality", "gen_locality")


def arguments() -> Any:
    p = parser(__doc__)
    p.add_argument("--sizes", type=ints, default=[10, 50], help="commits squashed per run (default 10,50)")
    p.add_argument("--start", type=int, default=400, help="first CounterFact record (default 400: held out)")
    p.add_argument("--methods", default="compose",
                   help="strategies measured as dry runs, comma-separated, each NAME or NAME:key=value;key=value "
                        "(JSON values), e.g. 'memit,memit:layers=[4],ultraedit,compose' (default compose)")
    p.add_argument("--real", default="auto",
                   help="strategy committed for real after the dry runs (default auto, kvc squash's default)")
    p.add_argument("--cache", default=None, help="where the ROME stores are kept between runs")
    p.add_argument("--build-only", action="store_true", help="only build (or finish) the ROME stores")
    p.add_argument("--fresh", action="store_true", help="redo rows already in the results file")
    p.add_argument("--tag", default="", help="a label stored with each row and part of what a rerun skips on "
                                             "(e.g. the code version measured), so older rows are kept beside")
    return p.parse_args()


def cache_dir(args: Any) -> Path:
    if args.cache:
        return Path(args.cache)
    root = Path(os.environ.get("KVC_CACHE", Path.home() / ".cache" / "kedit_vc"))
    return root / "bench_squash"


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build(args: Any, model: str) -> dict[int, Path]:
    """One store per size with that many ROME commits (records start..start+N), grown once."""
    from kedit_vc.compiler.plan import EditorCall, Plan
    from kedit_vc.eval.datasets import counterfact_case, load_records
    from kedit_vc.ops import Evaluator, init
    from kedit_vc.ops.commit import CommitOptions, commit_plan
    from kedit_vc.ops.history import live_edits
    from kedit_vc.store import open_store

    sizes = sorted(args.sizes)
    folder = cache_dir(args)
    growing = folder / f"rome_{args.start}"
    snapshots = {n: folder / f"rome_{args.start}_n{n}" for n in sizes}
    if all((path / ".kvc").is_dir() for path in snapshots.values()):
        return snapshots
    records = load_records("counterfact")[args.start:args.start + sizes[-1]]
    if len(records) < sizes[-1]:
        raise SystemExit(f"only {len(records)} records from {args.start}; lower --start or --sizes")
    store = open_store(growing) if (growing / ".kvc").is_dir() else init(growing, model)
    # Each commit is scored teacher-forced on prefixed prompts only: the squash measures
    # every form itself, and greedy generation would double the build on a shared CPU.
    evaluator = Evaluator(store, prompts="prefixed", generative=False)
    try:
        done = len(live_edits(store))
        for i in range(done, sizes[-1]):
            (request,) = counterfact_case(records[i]).requests
            plan = Plan(calls=(EditorCall("rome", {}, (request,)),))
            started = time.perf_counter()
            result = commit_plan(store, plan, f"# CounterFact record {args.start + i} (bench/squash.py)\n",
                                 f"cf{args.start + i}.kedit", CommitOptions(), evaluator=evaluator)
            row = result.report.rows[0].metrics
            print(f"commit {i + 1}/{sizes[-1]} {request.subject!r}: reliability {row.get('reliability')} "
                  f"({time.perf_counter() - started:.1f} s)", flush=True)
            if i + 1 in snapshots and not (snapshots[i + 1] / ".kvc").is_dir():
                shutil.copytree(growing, snapshots[i + 1])
    finally:
        store.close()
    for path in snapshots.values():
        if not (path / ".kvc").is_dir():
            shutil.copytree(growing, path)  # only when the growing store already had that many commits
    return snapshots


def headline(metrics: dict[str, float]) -> dict[str, float]:
    return {name: round(metrics[name], 4) for name in HEADLINE if name in metrics}


def strategy(text: str) -> tuple[str, dict[str, Any]]:
    """``"memit:layers=[4];v_steps=50"`` -> ("memit", {"layers": [4], "v_steps": 50})."""
    name, _, rest = text.partition(":")
    hparams = {}
    for pair in filter(None, rest.split(";")):
        key, _, value = pair.partition("=")
        hparams[key.strip()] = json.loads(value)
    return name, hparams


def len_chain(snapshot: Path) -> int:
    """Commits after the initial one in the store at ``snapshot``."""
    from kedit_vc.store import open_store

    with open_store(snapshot) as store:
        return len(store.chain()) - 1


def measure(snapshot: Path, work: Path, method: str, dry_run: bool) -> dict[str, Any]:
    """One squash of the whole range of a copy of ``snapshot`` with ``method`` (``strategy`` syntax)."""
    from kedit_vc.ops import squash
    from kedit_vc.ops.squash import SquashRefused
    from kedit_vc.store import open_store

    # Dry runs write nothing but the score cache, so they share one copy (the scores at the
    # tip are measured once); the real squash gets a fresh copy.
    if work.exists() and not dry_run:
        shutil.rmtree(work)
    if not work.exists():
        shutil.copytree(snapshot, work)
        scores = work.parent / f"dry_n{len_chain(snapshot)}" / ".kvc" / "cache" / "scores"
        if not dry_run and scores.is_dir():  # the tip's and the base's scores, content-addressed
            shutil.copytree(scores, work / ".kvc" / "cache" / "scores", dirs_exist_ok=True)
    store = open_store(work)
    try:
        n = len(store.chain()) - 1
        root = store.chain()[0]
        deltas = [store.read_commit(sha).delta() for sha in store.chain()[1:]]
        parts = sum(delta.summary().stored_bytes for delta in deltas)
        parts_file = sum(len(delta.to_bytes()) for delta in deltas)
        store_before = disk_bytes(work / ".kvc")
        started = time.perf_counter()
        try:
            name, hparams = strategy(method)
            result = squash(store, f"{root}..HEAD", method=name, hparams=hparams, dry_run=dry_run)
            refused = False
        except SquashRefused as error:
            result, refused = error.result, True
        seconds = time.perf_counter() - started
        after = result.after.metrics
        row = {
            "commits": n, "method": method, "hparams": hparams, "chosen": result.method, "form": result.form,
            "dry_run": dry_run,
            "refused": refused,
            "seconds": round(seconds, 2), "edit_seconds": round(after.get("seconds", float("nan")), 2),
            "attempts": [dict(a) for a in result.attempts],
            "before": headline(result.before.metrics), "after": headline(after),
            "held_before": sum(1 for r in result.before.rows if r.metrics.get("reliability") == 1.0),
            "edits_lost": len({loss.edit_id for loss in result.losses}),
            "checks_lost": [loss.to_json() for loss in result.losses],
            "parts_bytes": int(parts), "squashed_bytes": int(after.get("delta_bytes", -1)),
            "parts_file_bytes": int(parts_file), "squashed_file_bytes": int(after.get("delta_file_bytes", -1)),
            "store_bytes_before": store_before,
        }
        if result.sha is not None:
            row["store_bytes_after"] = disk_bytes(work / ".kvc")
        return row
    finally:
        store.close()


def main() -> None:
    args = arguments()
    setup(args)
    snapshots = build(args, args.model)
    if args.build_only:
        return
    path = Path(args.results_dir or RESULTS) / f"{NAME}.json"
    old = json.loads(path.read_text()) if path.is_file() and not args.fresh else {}
    rows: list[dict[str, Any]] = [r for r in old.get("rows", []) if r.get("start") == args.start]
    scratch = cache_dir(args) / "scratch"
    for n in sorted(args.sizes):
        plan = [(m, True) for m in args.methods.split(",") if m] + [(args.real, False)]
        for method, dry in plan:
            if any(r["commits"] == n and r["method"] == method and r["dry_run"] == dry
                   and r.get("tag", "") == args.tag for r in rows):
                continue
            load = os.getloadavg()
            work = scratch / (f"dry_n{n}" if dry else f"real_n{n}")
            row = {**measure(snapshots[n], work, method, dry), "start": args.start, "tag": args.tag,
                   "load_average_at_start": [round(x, 2) for x in load]}
            rows.append(row)
            b, a = row["before"], row["after"]
            print(f"n={n} {method}{' (dry run)' if dry else ''} -> {row['chosen']}: "
                  f"reliability {b.get('reliability')} -> {a.get('reliability')}, "
                  f"gen {b.get('gen_reliability')} -> {a.get('gen_reliability')}, "
                  f"edits lost {row['edits_lost']}/{row['held_before']}, {row['seconds']} s, "
                  f"bytes {row['parts_bytes']} -> {row['squashed_bytes']} (files {row['parts_file_bytes']} -> "
                  f"{row['squashed_file_bytes']})", flush=True)
            save(NAME, {"model": args.model, "threads": args.threads, "start": args.start, "rows": rows},
                 args.results_dir)
    print(table(rows))


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| N | strategy | chosen (stored as) | rel b→a | raw rel b→a | gen b→a | gener. b→a | raw gener. b→a | "
             "neigh b→a | raw neigh b→a | lost | s | file bytes parts → squashed |", "|" + "---|" * 13]
    # neighbourhood is CounterFact's (new object less likely than the true one); raw_locality_cf its raw twin

    def pair(row: dict[str, Any], name: str) -> str:
        b, a = row["before"].get(name), row["after"].get(name)
        return f"{'-' if b is None else f'{b:.2f}'}→{'-' if a is None else f'{a:.2f}'}"

    for r in rows:
        what = r["method"] + (" (dry)" if r["dry_run"] else "") + (f" [{r['tag']}]" if r.get("tag") else "")
        lines.append(f"| {r['commits']} | {what} | {r['chosen']} ({r.get('form', '-')}) | {pair(r, 'reliability')} | "
                     f"{pair(r, 'raw_reliability')} | {pair(r, 'gen_reliability')} | {pair(r, 'generalization')} | "
                     f"{pair(r, 'raw_generalization')} | {pair(r, 'neighbourhood')} | "
                     f"{pair(r, 'raw_locality_cf')} | {r['edits_lost']}/{r['held_before']} | {r['seconds']} | "
                     f"{r.get('parts_file_bytes', r['parts_bytes'])} → "
                     f"{r.get('squashed_file_bytes', r['squashed_bytes'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Checkout: HEAD's weights after 10, 100, 1000 commits, against loading the plain model.

A real store is grown with synthetic rank-one deltas at the model's real shapes (ROME's
kind of edit, cycling over the MEMIT layer range so several matrices are touched), through
``Store.write_commit`` as ``kvc commit`` writes them (HEAD cache advanced and objects packed
after each write; their share of the write time is recorded). At each checkpoint, in a
fresh ``Store`` as a new process would open it, and ``--repeats`` times interleaved:

* plain load: ``load_model`` from the cache (the baseline; target <= 1.2x at 1000);
* checkout: load, read HEAD's summed delta (``Store.live_sum``: the HEAD cache, one file),
  ``materialize`` it, add it to the weights (``ops.weights.Weights``);
* checkout without the cache (what checkout did before it): load, read every live delta
  from the history (``Store.live_deltas``), ``materialize``, add;
* naive: load, read the history, then each delta's dense update added one by one.

A checkout is a load followed by the read, materialise and add, so its ratio to a plain
load is (plain load + what the checkout adds) / plain load, each the median of the runs:
on a shared CPU a load alone varies by 2x from run to run (0.19 or 0.36 s for SmolLM2),
which would swamp a ratio of the two totals. Those ratios (of medians, and of the best
runs) are recorded too.

Then a commit deep in the history (the 10th) is reverted: the store write alone (target
<= 2 s; the cache drops the target's columns, no history read), and the write plus
re-materialising HEAD without it. ``--profile`` writes a cProfile of the checkout at the
largest size, with and without the cache, to ``checkout_profile.txt``.

    python bench/checkout.py --sizes 10,100,1000 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from common import RESULTS, ints, median, parser, save, setup, table, timer
from storage import Shapes

from kedit_vc.delta import Delta, materialize
from kedit_vc.editors.common.solve import factored_update
from kedit_vc.models import load_model
from kedit_vc.ops.weights import Weights
from kedit_vc.store import CommitInput, Store, gitio, init_store

LOAD_TARGET = 1.2
REVERT_TARGET_S = 2.0


def plain_load(ref: str) -> float:
    with timer() as t:
        load_model(ref, progress=False)
    return t["s"]


def checkout(root: Path, ref: str, cached: bool) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Load + read + materialise + add in a freshly opened store; returns the split and the
    touched parameters. ``cached``: HEAD's sum from the cache, else every live delta."""
    split = {}
    with timer() as t:
        lm = load_model(ref, progress=False)
    split["load"] = t["s"]
    with Store(root) as store:
        with timer() as t:
            deltas = [store.live_sum()] if cached else store.live_deltas()
        split["read"] = t["s"]
    with timer() as t:
        sums = materialize(deltas)
    split["materialize"] = t["s"]
    with timer() as t:
        Weights(lm.model).add_sums(sums)
    split["add"] = t["s"]
    split["total"] = sum(split.values())
    params = lm.model.state_dict()
    return split, {name: params[name].clone() for name in sums}


def added_to_load(root: Path, model: torch.nn.Module) -> None:
    """The checkout minus the load: open the store, read HEAD's sum, materialise, add."""
    with Store(root) as store:
        sums = materialize([store.live_sum()])
    Weights(model).add_sums(sums)


def naive(root: Path, ref: str) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Load, read the history, then each delta's dense form added in turn."""
    split = {}
    with timer() as t:
        lm = load_model(ref, progress=False)
    split["load"] = t["s"]
    with Store(root) as store, timer() as t:
        deltas = store.live_deltas()
    split["read"] = t["s"]
    params = lm.model.state_dict()
    with timer() as t, torch.no_grad():
        for delta in deltas:
            for name, update in delta.updates.items():
                params[name].add_(update.dense())
    split["apply"] = t["s"]
    split["total"] = sum(split.values())
    return split, {name: params[name].clone() for delta in deltas for name in delta.updates}


def medians(splits: list[dict[str, float]]) -> dict[str, float]:
    return {key: median([s[key] for s in splits]) for key in splits[0]}


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[n] - b[n]).abs().max()) for n in b)


def profile_text(label: str, run: Callable[[], Any], lines: int = 18) -> str:
    """cProfile of ``run()``: the top functions by cumulative time, paths shortened."""
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(run)
    seconds = time.perf_counter() - start
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(lines)
    body = re.sub(r"/\S*/(site-packages|kedit_vc|lib/python3\.\d+)/", r"\1/", out.getvalue())
    body = "\n".join(line.rstrip() for line in body.splitlines() if line.strip())
    return f"## {label}: {seconds:.3f} s\n\n{body}\n"


@contextmanager
def timed(obj: Any, name: str, into: dict[str, float]) -> Iterator[None]:
    """While inside, ``obj.name``'s seconds add up in ``into[name]``."""
    inner = getattr(obj, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            into[name] = into.get(name, 0.0) + time.perf_counter() - start

    setattr(obj, name, wrapper)
    try:
        yield
    finally:
        setattr(obj, name, inner)


def build_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--sizes", type=ints, default=[10, 100, 1000], help="commit counts to check out at")
    p.add_argument("--repeats", type=int, default=5, help="plain loads and checkouts per checkpoint (median)")
    p.add_argument("--revert-index", type=int, default=10, help="which commit (1-based) to revert at the end")
    p.add_argument("--profile", action="store_true", help="write checkout_profile.txt (cProfile, largest size)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_args(argv)
    setup(args)
    lm = load_model(args.model, progress=False)
    shapes = Shapes(lm.model)
    layers = list(shapes.memit_layers)
    gen = torch.Generator().manual_seed(0)
    rows: list[dict[str, Any]] = []
    shas: list[str] = []
    profile = ""
    housekeeping: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="kvc-bench-checkout-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        store = init_store(root, args.model, lm.fingerprint)
        stack.enter_context(timed(store.head_cache, "advance", housekeeping))
        stack.enter_context(timed(gitio, "pack", housekeeping))
        write_seconds = 0.0
        for size in sorted(args.sizes):
            with timer() as t:
                while len(shas) < size:
                    layer = layers[len(shas) % len(layers)]
                    d_model, d_mlp = shapes.dims(layer)
                    update = factored_update(torch.randn(d_model, 1, generator=gen),
                                             torch.randn(d_mlp, 1, generator=gen) * 1e-3, shapes.transposed)
                    delta = Delta({shapes.name(layer): update}, {"method": "rome", "layer": str(layer)})
                    shas.append(store.write_commit(CommitInput(f"bench {len(shas)}", delta=delta, method="rome",
                                                               edit_ids=(f"bench-{len(shas)}",))))
            write_seconds += t["s"]
            loads, ours, uncached = [], [], []
            for _ in range(args.repeats):  # interleaved, so that load-time drift hits all alike
                loads.append(plain_load(args.model))
                split, ours_params = checkout(root, args.model, cached=True)
                ours.append(split)
                split, full_params = checkout(root, args.model, cached=False)
                uncached.append(split)
            slow, slow_params = naive(root, args.model)
            load_s = median(loads)
            ours_m, uncached_m = medians(ours), medians(uncached)
            overhead = median([r["total"] - r["load"] for r in ours])
            uncached_overhead = median([r["total"] - r["load"] for r in uncached])
            row = {"commits": size, "plain_load_s": load_s, "plain_loads_s": loads, "checkout": ours_m,
                   "checkout_runs": ours, "checkout_uncached": uncached_m, "naive": slow,
                   "checkout_overhead_s": overhead, "uncached_overhead_s": uncached_overhead,
                   "checkout_over_load": (load_s + overhead) / load_s,
                   "checkout_over_load_medians": ours_m["total"] / load_s,
                   "checkout_over_load_best": min(r["total"] for r in ours) / min(loads),
                   "uncached_over_load": (load_s + uncached_overhead) / load_s,
                   "naive_over_load": (load_s + slow["total"] - slow["load"]) / load_s,
                   "max_abs_diff_vs_naive": max_diff(ours_params, slow_params),
                   "max_abs_diff_vs_uncached": max_diff(ours_params, full_params)}
            rows.append(row)
            print(f"{size} commits: load {load_s:.3f}s, checkout adds {overhead * 1000:.1f} ms "
                  f"(read {ours_m['read'] * 1000:.1f} ms), without the cache {uncached_overhead:.3f}s, "
                  f"naive {slow['total'] - slow['load']:.3f}s", flush=True)
        if args.profile:
            model = load_model(args.model, progress=False).model
            profile = "\n".join([
                f"# Checkout of HEAD after {len(shas)} commits ({args.model}), cProfile, top by cumulative time\n",
                profile_text("before: every live delta read from the history",
                             lambda: checkout(root, args.model, False)),
                profile_text("after: HEAD's sum read from the HEAD cache", lambda: checkout(root, args.model, True)),
                profile_text("after, what the checkout adds to the load (model loaded beforehand)",
                             lambda: added_to_load(root, model), lines=14),
            ])
        revert: dict[str, Any] = {}
        if len(shas) >= args.revert_index:
            target = shas[args.revert_index - 1]
            before = dict(housekeeping)
            with timer() as t:
                store.write_commit(CommitInput(f"revert {target[:10]}", op="revert", reverts=target))
            revert["write_s"] = t["s"]
            revert["write_split_s"] = {k: v - before.get(k, 0.0) for k, v in housekeeping.items()}
            with Store(root) as fresh, timer() as t:
                sums = materialize([fresh.live_sum()])
            revert["rematerialize_s"] = t["s"]
            revert["total_s"] = revert["write_s"] + revert["rematerialize_s"]
            revert["history"] = len(shas)
            revert["reverted"] = args.revert_index
            assert sums
        store.close()

    print()
    print(table(["commits", "plain load s", "checkout adds s", "  read (cache)", "  materialize", "  add",
                 "checkout / load", "(medians)", "(best)", "no cache adds s", "  read (history)", "no cache / load",
                 "naive / load", "max diff vs naive"],
                [[r["commits"], r["plain_load_s"], r["checkout_overhead_s"], r["checkout"]["read"],
                  r["checkout"]["materialize"], r["checkout"]["add"], r["checkout_over_load"],
                  r["checkout_over_load_medians"], r["checkout_over_load_best"], r["uncached_overhead_s"],
                  r["checkout_uncached"]["read"], r["uncached_over_load"], r["naive_over_load"],
                  r["max_abs_diff_vs_naive"]] for r in rows]))
    biggest = rows[-1]
    load_met = biggest["checkout_over_load"] <= LOAD_TARGET
    print(f"\ntarget checkout <= {LOAD_TARGET}x plain load at {biggest['commits']} commits: "
          f"{'met' if load_met else 'missed'} ({biggest['checkout_over_load']:.2f}x)")
    per_commit = {k: v / max(len(shas), 1) for k, v in housekeeping.items()}
    print(f"store write {write_seconds / max(len(shas), 1) * 1000:.1f} ms per commit, of which HEAD cache "
          f"{per_commit.get('advance', 0) * 1000:.1f} ms, packing {per_commit.get('pack', 0) * 1000:.1f} ms")
    revert_met = None
    if revert:
        revert_met = revert["write_s"] <= REVERT_TARGET_S
        print(f"revert of commit {revert['reverted']} of {revert['history']}: write {revert['write_s']:.2f}s "
              f"({'met' if revert_met else 'missed'} <= {REVERT_TARGET_S}s), + re-materialise "
              f"{revert['rematerialize_s']:.2f}s = {revert['total_s']:.2f}s")
    payload = {"model": args.model, "deltas": "synthetic rank-one factors at the model's shapes, layers "
               + ",".join(map(str, layers)) + " in turn", "rows": rows, "revert": revert, "repeats": args.repeats,
               "write_seconds_per_commit": write_seconds / max(len(shas), 1),
               "write_split_seconds_per_commit": {"head_cache": per_commit.get("advance", 0.0),
                                                  "pack": per_commit.get("pack", 0.0)},
               "targets": {"checkout_over_load": LOAD_TARGET, "checkout_met": load_met,
                           "revert_write_s": REVERT_TARGET_S, "revert_met": revert_met}}
    path = save("checkout", payload, args.results_dir)
    print(f"\nsaved {path}")
    if profile:
        folder = Path(args.results_dir) if args.results_dir else RESULTS
        (folder / "checkout_profile.txt").write_text(profile)
        print(f"saved {folder / 'checkout_profile.txt'}")
    return payload


if __name__ == "__main__":
    main()

"""Checkout: HEAD's weights after 10, 100, 1000 commits, against loading the plain model.

A real store is grown with synthetic rank-one deltas at the model's real shapes (ROME's
kind of edit, cycling over the MEMIT layer range so several matrices are touched). At
each checkpoint three ways to get HEAD's weights are timed, each from a fresh load:

* plain load: ``load_model`` from the cache (the baseline; target <= 1.2x at 1000);
* checkout: load, read the live deltas from the store, ``materialize`` (one matmul per
  parameter over the concatenated factors), add to the weights (``ops.weights.Weights``);
* naive: load, read, then each delta's dense update added one by one.

The read is also timed through a prototype reader (``direct_live_deltas``: one tree
read per commit, no ``git rev-parse`` per commit) to size the gain of that change.

Then a commit deep in the history (the 10th) is reverted: the store write alone
(target <= 2 s), and the write plus re-materialising HEAD without it.

    python bench/checkout.py --sizes 10,100,1000
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch

from common import ints, median, parser, save, setup, table, timer

from kedit_vc.delta import Delta, materialize
from kedit_vc.editors.common.solve import factored_update
from kedit_vc.models import load_model
from kedit_vc.ops.weights import Weights
from kedit_vc.store import CommitInput, gitio, init_store
from kedit_vc.store.history import live_commits
from kedit_vc.store.layout import MANIFEST_FILE
from kedit_vc.store.payload import json_from_bytes

from storage import Shapes

LOAD_TARGET = 1.2
REVERT_TARGET_S = 2.0


def direct_live_deltas(store: Any) -> list[Delta]:
    """A prototype of a cheaper ``Store.live_deltas``: one ``rev-list``, one tree read per
    commit, no ``rev-parse`` per commit. Same deltas (checked by content hash)."""
    chain = store.repo.git.rev_list("--first-parent", "--reverse", store.head()).split()
    files = {sha: gitio.read_files(store.repo, sha) for sha in chain}
    manifests = {sha: json_from_bytes(gitio.blob_bytes(files[sha][MANIFEST_FILE]), sha) for sha in chain}
    live = live_commits((sha, manifests[sha]) for sha in chain)
    return [store._load_delta(sha, files[sha], manifests[sha]) for sha in live]


def plain_load(ref: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with timer() as t:
            load_model(ref, progress=False)
        times.append(t["s"])
    return median(times)


def checkout(store: Any, ref: str) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Load + read + materialise + add; returns the split and the touched parameters."""
    split = {}
    with timer() as t:
        lm = load_model(ref, progress=False)
    split["load"] = t["s"]
    with timer() as t:
        deltas = store.live_deltas()
    split["read"] = t["s"]
    with timer() as t:
        direct = direct_live_deltas(store)
    split["read_prototype"] = t["s"]
    assert [d.content_hash() for d in direct] == [d.content_hash() for d in deltas]
    with timer() as t:
        sums = materialize(deltas)
    split["materialize"] = t["s"]
    with timer() as t:
        Weights(lm.model).add_sums(sums)
    split["add"] = t["s"]
    split["total"] = sum(v for k, v in split.items() if k != "read_prototype")
    split["total_with_prototype_read"] = split["total"] - split["read"] + split["read_prototype"]
    params = lm.model.state_dict()
    return split, {name: params[name].clone() for name in sums}


def naive(store: Any, ref: str, read_seconds: float) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Load, then each delta's dense form added in turn (reading is timed once, in ``checkout``)."""
    split = {}
    with timer() as t:
        lm = load_model(ref, progress=False)
    split["load"] = t["s"]
    deltas = store.live_deltas()
    split["read"] = read_seconds
    params = lm.model.state_dict()
    with timer() as t, torch.no_grad():
        for delta in deltas:
            for name, update in delta.updates.items():
                params[name].add_(update.dense())
    split["apply"] = t["s"]
    split["total"] = sum(split.values())
    return split, {name: params[name].clone() for delta in deltas[:1] for name in delta.updates}


def build_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--sizes", type=ints, default=[10, 100, 1000], help="commit counts to check out at")
    p.add_argument("--repeats", type=int, default=3, help="plain loads per checkpoint (median)")
    p.add_argument("--revert-index", type=int, default=10, help="which commit (1-based) to revert at the end")
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
    with tempfile.TemporaryDirectory(prefix="kvc-bench-checkout-") as tmp:
        store = init_store(Path(tmp), args.model, lm.fingerprint)
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
            load_s = plain_load(args.model, args.repeats)
            ours, ours_params = checkout(store, args.model)
            slow, slow_params = naive(store, args.model, ours["read"])
            diff = max(float((ours_params[n] - slow_params[n]).abs().max()) for n in slow_params)
            row = {"commits": size, "plain_load_s": load_s, "checkout": ours, "naive": slow,
                   "checkout_over_load": ours["total"] / load_s, "naive_over_load": slow["total"] / load_s,
                   "max_abs_diff_vs_naive": diff}
            rows.append(row)
            print(f"{size} commits: load {load_s:.2f}s, checkout {ours['total']:.2f}s "
                  f"(read {ours['read']:.2f}s), naive {slow['total']:.2f}s", flush=True)
        revert: dict[str, Any] = {}
        if len(shas) >= args.revert_index:
            target = shas[args.revert_index - 1]
            with timer() as t:
                store.write_commit(CommitInput(f"revert {target[:10]}", op="revert", reverts=target))
            revert["write_s"] = t["s"]
            with timer() as t:
                sums = materialize(store.live_deltas())
            revert["rematerialize_s"] = t["s"]
            revert["total_s"] = revert["write_s"] + revert["rematerialize_s"]
            revert["history"] = len(shas)
            revert["reverted"] = args.revert_index
            assert sums
        store.close()

    print()
    print(table(["commits", "plain load s", "checkout s", "  read", "  materialize", "  add", "naive s",
                 "  naive apply", "checkout / load", "naive / load", "read (prototype)", "checkout / load (prototype)"],
                [[r["commits"], r["plain_load_s"], r["checkout"]["total"], r["checkout"]["read"],
                  r["checkout"]["materialize"], r["checkout"]["add"], r["naive"]["total"], r["naive"]["apply"],
                  r["checkout_over_load"], r["naive_over_load"], r["checkout"]["read_prototype"],
                  r["checkout"]["total_with_prototype_read"] / r["plain_load_s"]] for r in rows]))
    biggest = rows[-1]
    load_met = biggest["checkout_over_load"] <= LOAD_TARGET
    print(f"\ntarget checkout <= {LOAD_TARGET}x plain load at {biggest['commits']} commits: "
          f"{'met' if load_met else 'missed'} ({biggest['checkout_over_load']:.2f}x)")
    revert_met = None
    if revert:
        revert_met = revert["write_s"] <= REVERT_TARGET_S
        print(f"revert of commit {revert['reverted']} of {revert['history']}: write {revert['write_s']:.2f}s "
              f"({'met' if revert_met else 'missed'} <= {REVERT_TARGET_S}s), + re-materialise "
              f"{revert['rematerialize_s']:.2f}s = {revert['total_s']:.2f}s")
    payload = {"model": args.model, "deltas": "synthetic rank-one factors at the model's shapes, layers "
               + ",".join(map(str, layers)) + " in turn", "rows": rows, "revert": revert,
               "write_seconds_per_commit": write_seconds / max(len(shas), 1),
               "targets": {"checkout_over_load": LOAD_TARGET, "checkout_met": load_met,
                           "revert_write_s": REVERT_TARGET_S, "revert_met": revert_met}}
    path = save("checkout", payload, args.results_dir)
    print(f"\nsaved {path}")
    return payload


if __name__ == "__main__":
    main()

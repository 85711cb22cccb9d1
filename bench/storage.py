"""Bytes per commit for ROME, MEMIT and FT-L deltas against the dense delta of the same tensors.

The deltas are synthetic, built with the editors' own constructors at the model's real
shapes and ranks: ROME a rank-one ``factored_update`` of one MLP down-projection, MEMIT
a rank-n factor pair on each of its default layers, FT-L one ``Dense`` float32 matrix.
Sizes do not depend on the values except through git's zlib compression, which gains
almost nothing on float32 noise or on real edits alike. Each commit also carries the
written keys (as ``kvc commit`` stores them) and a one-line spec.

Measured, as the store is right after ``write_commit`` returns (it packs its new objects
after each write, ``gitio.pack``) and, in the same run, with packing off (loose objects,
as before): the delta file (safetensors bytes); per method, the history's disk growth per
commit over ``--method-commits`` commits into a fresh store (apparent bytes and disk
blocks); the store after ``--commits`` rank-one commits, and the loose one after a manual
``git gc``; the time of each write. The history (``repo.git`` and ``objects/``) is counted
apart from the HEAD cache (``cache/``: derived, deletable, at most one dense matrix per
touched parameter), whose size is reported beside it. The baseline is the dense float32
delta of the same tensors. Target: >= 200x for rank-one edits.

    python bench/storage.py --commits 200
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
from common import parser, save, setup, table, timer

from kedit_vc.delta import Delta, Dense
from kedit_vc.delta.updates import dense_bytes
from kedit_vc.editors.common.solve import factored_update
from kedit_vc.editors.registry import build_hparams, resolve_hparams
from kedit_vc.models import load_model
from kedit_vc.models.families import family_of
from kedit_vc.store import CommitInput, Store, init_store

TARGET_RATIO = 200.0


def folder_bytes(path: Path) -> tuple[int, int]:
    """(apparent bytes, bytes of disk blocks) of every file under ``path``."""
    apparent = disk = 0
    for file in path.rglob("*"):
        if file.is_file():
            st = file.stat()
            apparent += st.st_size
            disk += st.st_blocks * 512
    return apparent, disk


class Shapes:
    """The edited parameters of a model: names, shapes and layout, read off the loaded model."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.family = family_of(model)
        self.params = {n: tuple(p.shape) for n, p in model.state_dict().items()}
        self.rome_layer = resolve_hparams("rome", model, build_hparams("rome", {})).layer
        self.memit_layers = resolve_hparams("memit", model, build_hparams("memit", {})).layers
        self.transposed = self.family.mlp_out_transposed

    def name(self, layer: int) -> str:
        return self.family.mlp_out_weight_name(layer)

    def dims(self, layer: int) -> tuple[int, int]:
        """(d_model, d_mlp) of the layer's MLP output projection."""
        rows, cols = self.params[self.name(layer)]
        return (cols, rows) if self.transposed else (rows, cols)


def rome_delta(shapes: Shapes, layer: int, gen: torch.Generator) -> tuple[Delta, dict[int, torch.Tensor]]:
    d_model, d_mlp = shapes.dims(layer)
    update = factored_update(torch.randn(d_model, 1, generator=gen), torch.randn(d_mlp, 1, generator=gen),
                             shapes.transposed)
    return Delta({shapes.name(layer): update}, {"method": "rome", "layer": str(layer)}), \
        {layer: torch.randn(1, d_mlp, generator=gen)}


def memit_delta(shapes: Shapes, n: int, gen: torch.Generator) -> tuple[Delta, dict[int, torch.Tensor]]:
    updates, keys = {}, {}
    for layer in shapes.memit_layers:
        d_model, d_mlp = shapes.dims(layer)
        updates[shapes.name(layer)] = factored_update(torch.randn(d_model, n, generator=gen),
                                                      torch.randn(d_mlp, n, generator=gen), shapes.transposed)
        keys[layer] = torch.randn(n, d_mlp, generator=gen)
    meta = {"method": "memit", "layers": ",".join(map(str, shapes.memit_layers))}
    return Delta(updates, meta), keys


def ft_delta(shapes: Shapes, layer: int, gen: torch.Generator) -> tuple[Delta, dict[int, torch.Tensor]]:
    value = torch.randn(shapes.params[shapes.name(layer)], generator=gen) * 5e-4
    return Delta({shapes.name(layer): Dense(value)}, {"method": "ft", "layer": str(layer)}), {}


def commit(store: Any, delta: Delta, keys: dict[int, torch.Tensor], i: int) -> str:
    spec = f'edit "bench-{i}" {{ "Subject {i}" is located in "City {i}" }}\n'
    return store.write_commit(CommitInput(f"bench edit {i}", delta=delta, method=delta.meta["method"],
                                          edit_ids=(f"bench-{i}",), spec_text=spec, keys=keys or None))


def history_bytes(store: Any) -> tuple[int, int]:
    """(apparent, disk) bytes of the history: the git repository and the large-delta objects."""
    repo, objects = folder_bytes(store.paths.repo), folder_bytes(store.paths.objects)
    return repo[0] + objects[0], repo[1] + objects[1]


def grow(root: Path, ref: str, fingerprint: str, make: Any, n: int, pack: bool) -> dict[str, Any]:
    """``n`` commits of ``make()`` into a fresh store; disk right after each, and write times."""
    store = init_store(root, ref, fingerprint)
    store.auto_pack = pack
    start = history_bytes(store)
    after, seconds, dense = [], [], 0
    for i in range(n):
        delta, keys = make()
        dense += sum(dense_bytes(u) for u in delta.updates.values())
        with timer() as t:
            commit(store, delta, keys, i)
        seconds.append(t["s"])
        after.append(history_bytes(store))
    cache = folder_bytes(store.paths.head_cache.parent)[1]
    store.close()
    return {"start": start, "after": after, "seconds": seconds, "dense": dense, "cache_disk": cache,
            "apparent_per_commit": (after[-1][0] - start[0]) / n, "disk_per_commit": (after[-1][1] - start[1]) / n,
            "first_commit_disk": after[0][1] - start[1], "write_s": sum(seconds) / n}


def build_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--commits", type=int, default=200, help="rank-one commits for the store-size figure")
    p.add_argument("--method-commits", type=int, default=8, help="commits per method for the per-commit figure")
    p.add_argument("--memit-batch", type=int, default=10, help="edits in the MEMIT delta measured")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_args(argv)
    setup(args)
    lm = load_model(args.model, progress=False)
    shapes = Shapes(lm.model)
    gen = torch.Generator().manual_seed(0)
    makers = {
        "rome (rank 1)": lambda: rome_delta(shapes, shapes.rome_layer, gen),
        f"memit ({args.memit_batch} edits, rank {args.memit_batch} x {len(shapes.memit_layers)} layers)":
            lambda: memit_delta(shapes, args.memit_batch, gen),
        "ft-l (dense)": lambda: ft_delta(shapes, shapes.rome_layer, gen),
    }
    k = args.method_commits
    methods: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kvc-bench-storage-") as tmp:
        for index, (label, make) in enumerate(makers.items()):
            delta, _ = make()
            packed = grow(Path(tmp) / f"m{index}", args.model, lm.fingerprint, make, k, pack=True)
            loose = grow(Path(tmp) / f"m{index}-loose", args.model, lm.fingerprint, make, k, pack=False)
            dense = packed["dense"] / k
            file_bytes = len(delta.to_bytes())
            methods[label] = {
                "commits": k, "delta_file_bytes": file_bytes, "dense_bytes": dense,
                "commit_apparent_bytes": packed["apparent_per_commit"], "commit_disk_bytes": packed["disk_per_commit"],
                "first_commit_disk_bytes": packed["first_commit_disk"], "cache_disk_bytes": packed["cache_disk"],
                "loose_commit_disk_bytes": loose["disk_per_commit"],
                "ratio_file": dense / file_bytes, "ratio_commit_apparent": dense / packed["apparent_per_commit"],
                "ratio_commit_disk": dense / packed["disk_per_commit"],
                "ratio_first_commit_disk": dense / packed["first_commit_disk"],
                "ratio_loose_commit_disk": dense / loose["disk_per_commit"],
                "write_s": packed["write_s"], "loose_write_s": loose["write_s"]}

        rome = makers["rome (rank 1)"]
        packed = grow(Path(tmp) / "history", args.model, lm.fingerprint, rome, args.commits, pack=True)
        loose_store = Path(tmp) / "history-loose"
        loose = grow(loose_store, args.model, lm.fingerprint, rome, args.commits, pack=False)
        subprocess.run(["git", "--git-dir", str(loose_store / ".kvc" / "repo.git"), "gc", "--quiet"], check=True)
        with Store(loose_store) as store:
            gc_bytes = history_bytes(store)
    dense_total = packed["dense"]
    history: dict[str, Any] = {"commits": args.commits, "dense_equivalent_bytes": dense_total,
                               "cache_disk": packed["cache_disk"]}
    for state, run, final in (("packed", packed, packed["after"][-1]), ("loose", loose, loose["after"][-1]),
                              ("loose_after_git_gc", loose, gc_bytes)):
        grown = final[1] - run["start"][1]
        history[state] = {"apparent": final[0], "disk": final[1], "disk_per_commit": grown / args.commits,
                          "ratio_dense_over_disk": dense_total / max(grown, 1)}
    history["packed"]["write_seconds_per_commit"] = packed["write_s"]
    history["loose"]["write_seconds_per_commit"] = loose["write_s"]
    history["write_seconds_per_commit"] = packed["write_s"]

    rows = [[label, m["delta_file_bytes"], m["commit_disk_bytes"], m["first_commit_disk_bytes"],
             m["loose_commit_disk_bytes"], m["dense_bytes"], m["ratio_file"], m["ratio_commit_disk"],
             m["ratio_loose_commit_disk"], m["cache_disk_bytes"]] for label, m in methods.items()]
    print(table(["method", "delta file B", f"commit B on disk (mean of {k}, packed)", "first commit B",
                 "commit B (loose)", "dense B", "dense / file", "dense / commit", "dense / commit (loose)",
                 "HEAD cache B"], rows))
    print(f"\nStore after {args.commits} rank-one commits (dense equivalent {dense_total / 2**20:.1f} MiB); "
          f"write {packed['write_s'] * 1000:.0f} ms per commit packed, {loose['write_s'] * 1000:.0f} ms loose; "
          f"HEAD cache {packed['cache_disk'] / 2**20:.2f} MiB beside it:")
    print(table(["state", "apparent MiB", "disk MiB", "disk per commit B", "dense / disk"],
                [[s, history[s]["apparent"] / 2**20, history[s]["disk"] / 2**20, history[s]["disk_per_commit"],
                  history[s]["ratio_dense_over_disk"]] for s in ("packed", "loose", "loose_after_git_gc")]))
    rank_one = methods["rome (rank 1)"]
    verdict = {"rome_file_ratio_met": rank_one["ratio_file"] >= TARGET_RATIO,
               "rome_commit_disk_ratio_met": rank_one["ratio_commit_disk"] >= TARGET_RATIO,
               "store_packed_ratio_met": history["packed"]["ratio_dense_over_disk"] >= TARGET_RATIO}
    print(f"\ntarget dense/stored >= {TARGET_RATIO:.0f}x for rank-one: " +
          ", ".join(f"{k} {'met' if v else 'missed'}" for k, v in verdict.items()))
    payload = {"model": args.model, "deltas": "synthetic, editors' constructors at the model's shapes and ranks",
               "methods": methods, "history": history, "target_ratio": TARGET_RATIO, "targets": verdict}
    path = save("storage", payload, args.results_dir)
    print(f"\nsaved {path}")
    return payload


if __name__ == "__main__":
    main()

"""A store at mass-editing scale: 5,000 live edits in 50 commits of 100 (issue 15).

The history is grown through ``Store.write_commit`` as ``kvc commit --batch-size 100``
writes it, each commit carrying a plan of 100 real CounterFact requests (the flat 5k
file) and an UltraEdit-shaped delta: dense updates of SmolLM2's ``down_proj`` in blocks
24..28 (random, tiny: the weights barely move; what is timed is the store, not the edit)
plus carried statistics. Then each command a user runs is timed as a fresh process
(``kvc log``, ``kvc show HEAD``, ``kvc status``, ``kvc eval --sample 50``) and checkout
(load + HEAD's weights) against a plain model load, the baseline of the same run.

    python bench/store_scale.py --commits 50 --per-commit 100
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import median, parser, save, setup


def run(args: list[str], cwd: Path) -> float:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kedit_vc.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "160"})
    if done.returncode != 0:
        raise SystemExit(f"kvc {' '.join(args)} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - began


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--commits", type=int, default=50)
    p.add_argument("--per-commit", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", default=None, help="where to grow the store (default: a temp folder)")
    args = p.parse_args()
    setup(args)
    import torch

    from kedit_vc.compiler.plan import EditorCall, Plan
    from kedit_vc.delta import Delta, Dense
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.models import load_model
    from kedit_vc.ops import init
    from kedit_vc.ops.weights import Weights
    from kedit_vc.store import CommitInput, open_store

    root = Path(args.dir or tempfile.mkdtemp(prefix="kvc-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    store = init(root, args.model)
    lm = load_model(args.model, progress=False)
    names = [f"model.layers.{i}.mlp.down_proj.weight" for i in range(24, 29)]
    shapes = {n: tuple(dict(lm.model.named_parameters())[n].shape) for n in names}
    requests = [r for c in load_cases("counterfact5k", args.commits * args.per_commit) for r in c.requests]
    generator = torch.Generator().manual_seed(0)
    write_seconds = []
    for k in range(args.commits):
        chunk = tuple(requests[k * args.per_commit:(k + 1) * args.per_commit])
        plan = Plan(calls=(EditorCall("ultraedit", {}, chunk),))
        delta = Delta(updates={n: Dense(value=torch.randn(shapes[n], generator=generator) * 1e-6) for n in names})
        carried = {"ultraedit/1536x576/n": torch.tensor([float(len(chunk))], dtype=torch.float64),
                   "ultraedit/1536x576/sum": torch.randn(2112, dtype=torch.float64, generator=generator),
                   "ultraedit/1536x576/sumsq": torch.rand(2112, dtype=torch.float64, generator=generator)}
        began = time.perf_counter()
        store.write_commit(CommitInput(message=f"facts [chunk {k + 1}/{args.commits}]", delta=delta,
                                       spec_name="facts.kedit", spec_text="", plan=plan.to_json(),
                                       method="ultraedit", edit_ids=tuple(r.edit_id for r in chunk),
                                       carried=carried, extra={"batch": {"chunk": k + 1, "chunks": args.commits}}),
                           expected_head=store.head())
        write_seconds.append(time.perf_counter() - began)
        print(f"commit {k + 1}/{args.commits}: {write_seconds[-1]:.2f} s", flush=True)
    store.close()

    timings: dict[str, list[float]] = {"plain load": [], "checkout (load + HEAD)": [], "kvc log": [],
                                       "kvc log --oneline": [], "kvc show HEAD": [], "kvc status": [],
                                       "kvc eval --sample 50": []}
    for _ in range(args.repeats):
        began = time.perf_counter()
        load_model(args.model, progress=False)
        timings["plain load"].append(time.perf_counter() - began)
        began = time.perf_counter()
        fresh = load_model(args.model, progress=False)
        with open_store(root) as s:
            Weights(fresh.model).set_deltas([s.live_sum("HEAD")])
        timings["checkout (load + HEAD)"].append(time.perf_counter() - began)
        timings["kvc log"].append(run(["log"], root))
        timings["kvc log --oneline"].append(run(["log", "--oneline"], root))
        timings["kvc show HEAD"].append(run(["show", "HEAD"], root))
        timings["kvc status"].append(run(["status"], root))
    timings["kvc eval --sample 50"].append(run(["eval", "--sample", "50", "--no-generative", "--prompts", "prefixed",
                                                "--no-progress"], root))
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    rows = {name: round(median(values), 3) for name, values in timings.items()}
    for name, value in rows.items():
        print(f"{name:<28} {value:8.2f} s")
    print(f"store on disk {size / 2**20:.0f} MiB; store write per commit median {median(write_seconds):.2f} s")
    save("store_scale", {"commits": args.commits, "per_commit": args.per_commit, "live_edits": len(requests),
                         "median_seconds": rows, "write_seconds_median": round(median(write_seconds), 3),
                         "checkout_over_plain_load": round(rows["checkout (load + HEAD)"] / rows["plain load"], 3),
                         "store_bytes": size, "repeats": args.repeats}, args.results_dir)


if __name__ == "__main__":
    main()

"""GPU check: ROME, MEMIT, AlphaEdit and UltraEdit on SmolLM2 and Gemma 3 270M, bfloat16 and
float32, on a CUDA GPU; scores compared with a CPU float32 run and timed.

One command (about 8 minutes on one H200 with the defaults, first run included: statistics
are computed on the GPU once per model and layer, then cached)::

    OMP_NUM_THREADS=8 python bench/gpu_check.py            # JSON: bench/results/gpu_check.json

Per (model, method, dtype) it runs ``kvc bench counterfact`` on the same records and records
seconds per ROME edit, seconds per fact in a MEMIT/UltraEdit batch (``--batch-facts``, default
1,000), AlphaEdit likewise (``--alpha-facts``), peak GPU memory, and the headline scores. The
CPU reference is ROME float32 on the first ``--cpu-n`` records; each GPU ROME row reports its
score differences from it on those records. Without a GPU it refuses (exit 2, "no GPU").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import save

HEADLINES = ("efficacy", "reliability", "generalization", "locality", "cf_score")


def build_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="smollm2,gemma3-270m")
    p.add_argument("--dtypes", default="bfloat16,float32")
    p.add_argument("--rome-n", type=int, default=20, help="ROME cases, one edit each")
    p.add_argument("--batch-facts", type=int, default=1000, help="facts in one MEMIT / UltraEdit batch")
    p.add_argument("--alpha-facts", type=int, default=1000, help="facts in one AlphaEdit batch")
    p.add_argument("--cpu-n", type=int, default=5, help="ROME float32 CPU reference cases (first records)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--name", default="gpu_check")
    p.add_argument("--results-dir", default=None)
    return p.parse_args(argv)


def run_bench(model: str, method: str, n: int, batch: int, device: str, dtype: str) -> dict[str, Any]:
    """``kvc bench counterfact`` in a child process (its own CUDA context, so peak memory is its own)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "bench.json"
        command = [sys.executable, "-m", "kedit_vc.cli.main", "bench", "counterfact", "--model", model,
                   "--n", str(n), "--batch", str(batch), "--method", method, "--device", device,
                   "--dtype", dtype, "--no-progress", "--json", str(out)]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0 or not out.is_file():
            return {"ok": False, "wall_seconds": wall, "error": (done.stderr or done.stdout)[-2000:]}
        result = json.loads(out.read_text())
    metrics = result.get("report", {}).get("metrics", {})
    facts = n
    return {"ok": True, "wall_seconds": wall, "n": n, "batch": batch,
            "edit_seconds": result.get("edit_seconds"),
            "seconds_per_fact": (result.get("edit_seconds") or 0.0) / max(facts, 1),
            "median_edit_seconds": result.get("median_edit_seconds"),
            "peak_gpu_bytes": result.get("peak_gpu_bytes"),
            "scores": {k: metrics[k] for k in HEADLINES if k in metrics}}


def main(argv: list[str] | None = None) -> int:
    args = build_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("no GPU: torch.cuda is unavailable on this machine; bench/gpu_check.py runs only on a CUDA GPU "
              "(CPU figures: bench/dtype_rome.sh)", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    payload: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                               "args": vars(args), "rows": rows}
    for model in args.models.split(","):
        reference = run_bench(model, "rome", args.cpu_n, 1, "cpu", "float32")
        rows.append({"model": model, "method": "rome", "device": "cpu", "dtype": "float32", **reference})
        for dtype in args.dtypes.split(","):
            plan = [("rome", args.rome_n, 1), ("memit", args.batch_facts, args.batch_facts),
                    ("ultraedit", args.batch_facts, args.batch_facts),
                    ("alphaedit", args.alpha_facts, args.alpha_facts)]
            for method, n, batch in plan:
                row = {"model": model, "method": method, "device": args.device, "dtype": dtype,
                       **run_bench(model, method, n, batch, args.device, dtype)}
                if method == "rome" and reference.get("ok") and row.get("ok"):
                    same = run_bench(model, "rome", args.cpu_n, 1, args.device, dtype)
                    row["vs_cpu_first_n"] = {k: same["scores"].get(k, float("nan")) - v
                                             for k, v in reference["scores"].items()} if same.get("ok") else None
                rows.append(row)
                print(json.dumps({k: row.get(k) for k in ("model", "method", "dtype", "ok", "median_edit_seconds",
                                                          "seconds_per_fact", "peak_gpu_bytes", "scores")}),
                      flush=True)
                save(args.name, payload, args.results_dir)   # partial results survive a timeout
    path = save(args.name, payload, args.results_dir)
    print(f"wrote {path}")
    return 0 if all(row.get("ok") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

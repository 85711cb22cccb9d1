"""MEMIT batch scaling: seconds per edit and peak memory at 1, 10, 100 (500) edits per batch.

The baseline is the single-edit batch, measured in the same run with the same
hyperparameters: the target is per-edit time at 500 edits <= 0.2x the single edit's.
Statistics for the MEMIT layers (computed or read from the cache) and the context
templates are made before anything is timed. Each batch is the first n CounterFact records;
peak RSS is reset before each batch (Linux), so it is that batch's peak, the loaded model included.

Target optimisation runs requests in chunks of ``CHUNK_SIZE`` (8), so its activation
memory grows with n only up to a chunk. Before a batch, the peak growth measured on the
previous one is extrapolated by the chunk-bounded size (``projected_growth``) and the
batch is skipped (recorded as such) if it would not fit in the memory available;
``--force`` runs it anyway.

    python bench/memit_scaling.py --sizes 1,10,100            # add --big for 500
    python bench/memit_scaling.py --v-steps 5 --context-templates 2   # cheaper, say so
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from common import ints, mib, parser, peak_rss_bytes, reset_peak_rss, rss_bytes, save, setup, table, timer

from kedit_vc.editors.base import EditContext, get_editor
from kedit_vc.editors.common.templates import context_templates
from kedit_vc.editors.registry import build_hparams, resolve_hparams
from kedit_vc.eval.datasets import load_cases
from kedit_vc.models import load_model
from kedit_vc.stats import key_second_moments

TARGET_RATIO = 0.2


def projected_growth(measured_bytes: float, measured_n: int, n: int) -> float:
    """Peak growth expected at ``n`` edits from one measured at ``measured_n``.

    Activations scale with the requests optimised together, at most ``CHUNK_SIZE``; the
    rest (keys, residuals) is a few KiB per request, so the chunk term dominates.
    """
    from kedit_vc.editors.common.targets import CHUNK_SIZE

    return measured_bytes * min(n, CHUNK_SIZE) / min(measured_n, CHUNK_SIZE)


def available_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memit_hparams(model: Any, args: argparse.Namespace) -> Any:
    overrides = {k: v for k, v in {"layers": args.layers, "v_steps": args.v_steps, "stats_tokens": args.stats_tokens,
                                   "context_templates": args.context_templates,
                                   "context_length": args.context_length}.items() if v is not None}
    return resolve_hparams("memit", model, build_hparams("memit", overrides))


def add_memit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layers", type=ints, default=None, help="edited layers (default: the model's MEMIT range)")
    p.add_argument("--v-steps", type=int, default=None, help="target optimisation steps (default 25)")
    p.add_argument("--context-templates", type=int, default=None, help="default 10")
    p.add_argument("--context-length", type=int, default=None)
    p.add_argument("--stats-tokens", type=int, default=4000,
                   help="covariance sample (cached before timing; the edit's cost does not depend on it)")
    p.add_argument("--stats-dir", default=None)
    p.add_argument("--force", action="store_true", help="run batches projected not to fit in memory")


def build_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--sizes", type=ints, default=[1, 10, 100], help="edits per batch")
    p.add_argument("--big", action="store_true", help="add a 500-edit batch")
    add_memit_args(p)
    return p.parse_args(argv)


def run_batch(lm: Any, hp: Any, n: int, stats_dir: str | None) -> dict[str, Any]:
    """One MEMIT edit of the first ``n`` CounterFact records: time, split and peak RSS."""
    requests = [case.requests[0] for case in load_cases("counterfact", n)]
    context = EditContext(fingerprint=lm.fingerprint, stats_dir=stats_dir, progress=False)
    before = rss_bytes()
    reset_peak_rss()
    with timer() as t:
        info = get_editor("memit").edit(lm.model, lm.tokenizer, requests, hp, context).info
    peak = peak_rss_bytes()
    return {"n": len(requests), "seconds": t["s"], "seconds_per_edit": t["s"] / len(requests),
            "value_seconds": info["value_seconds"], "update_seconds": info["update_seconds"],
            "target_steps": info["target_steps"], "rss_before_bytes": before, "peak_rss_bytes": peak,
            "peak_growth_bytes": peak - (before or 0)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_args(argv)
    setup(args)
    sizes = sorted(set(args.sizes + ([500] if args.big else [])))
    lm = load_model(args.model, progress=False)
    hp = memit_hparams(lm.model, args)
    with timer() as t_stats:
        key_second_moments(lm.model, lm.tokenizer, lm.fingerprint, hp.layers, hp.stats_tokens,
                           stats_dir=args.stats_dir, progress=False)
        # Templates are generated once per model and session: not part of any batch's cost.
        context_templates(lm.model, lm.tokenizer, hp.context_templates, hp.context_length)
    rows: list[dict[str, Any]] = []
    for n in sizes:
        if rows and not args.force:
            last = rows[-1] if "seconds" in rows[-1] else None
            room = available_bytes()
            if last is not None and room is not None:
                projected = projected_growth(last["peak_growth_bytes"], last["n"], n)
                if projected > 0.7 * room:
                    print(f"{n} edits: skipped, projected peak growth {mib(projected)} MiB > 70% of the "
                          f"{mib(room)} MiB available (--force to run)", flush=True)
                    rows.append({"n": n, "skipped": True, "projected_growth_bytes": projected, "available_bytes": room})
                    continue
        row = run_batch(lm, hp, n, args.stats_dir)
        rows.append(row)
        print(f"{n} edits: {row['seconds']:.1f}s ({row['seconds_per_edit']:.2f}s/edit), "
              f"peak RSS {mib(row['peak_rss_bytes'])} MiB", flush=True)
    single = next((r for r in rows if r.get("n") == 1 and "seconds" in r), None)
    for r in rows:
        if single is not None and "seconds" in r:
            r["per_edit_over_single"] = r["seconds_per_edit"] / single["seconds_per_edit"]
    print()
    print(table(["edits", "seconds", "s/edit", "x single", "targets s", "spread s", "peak RSS MiB", "growth MiB"],
                [[r["n"], r["seconds"], r["seconds_per_edit"], r.get("per_edit_over_single", float("nan")),
                  r["value_seconds"], r["update_seconds"], mib(r["peak_rss_bytes"]), mib(r["peak_growth_bytes"])]
                 if "seconds" in r
                 else [r["n"], "skipped (memory)", "", "", "", "", "", mib(r["projected_growth_bytes"])]
                 for r in rows]))
    largest = max((r for r in rows if "per_edit_over_single" in r), key=lambda r: r["n"])
    met = largest["per_edit_over_single"] <= TARGET_RATIO
    print(f"\ntarget per-edit time at 500 <= {TARGET_RATIO}x single: measured at {largest['n']}: "
          f"{largest['per_edit_over_single']:.2f}x ({'met' if met else 'missed'}"
          f"{'' if largest['n'] >= 500 else ', 500 not measured'})")
    payload = {"model": args.model, "layers": list(hp.layers),
               "hparams": {"v_steps": hp.v_steps, "context_templates": hp.context_templates,
                           "context_length": hp.context_length, "stats_tokens": hp.stats_tokens},
               "stats_seconds_untimed": round(t_stats["s"], 3), "rows": rows, "target_ratio": TARGET_RATIO,
               "target_measured_at": largest["n"], "target_met": met}
    path = save("memit_scaling", payload, args.results_dir)
    print(f"\nsaved {path}")
    return payload


if __name__ == "__main__":
    main()

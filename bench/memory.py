"""Peak memory of a ROME edit and of a MEMIT batch, beside the loaded model's own footprint.

The baseline is the process's RSS with the model loaded and statistics cached (what any
use of the model costs). Peak RSS is reset (Linux ``/proc/self/clear_refs``) before each
edit, so each figure is that edit's peak, the model included. Target: ROME <= 2 GiB.

A MEMIT batch's peak is set by one optimisation step's activations (one chunk of 8
requests' prompts), which every step repeats, so the MEMIT batch runs few steps by
default (``--memit-v-steps 2``). A probe batch (``--probe``, 10 edits) runs first and its
growth is extrapolated (chunk-bounded); a batch that would not fit in the memory available
is skipped and recorded as such (``--force`` runs it).

    python bench/memory.py                 # ROME + MEMIT 100
    python bench/memory.py --big           # MEMIT 500
"""

from __future__ import annotations

import argparse
from typing import Any

from common import mib, parser, peak_rss_bytes, reset_peak_rss, rss_bytes, save, setup, table, timer
from memit_scaling import add_memit_args, available_bytes, memit_hparams, projected_growth, run_batch

from kedit_vc.editors.base import EditContext, get_editor
from kedit_vc.editors.common.templates import context_templates
from kedit_vc.editors.registry import build_hparams, resolve_hparams
from kedit_vc.eval.datasets import load_cases
from kedit_vc.models import load_model
from kedit_vc.stats import key_second_moments

ROME_TARGET_BYTES = 2 * 2**30


def build_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--memit-batch", type=int, default=100, help="edits in the MEMIT batch")
    p.add_argument("--big", action="store_true", help="a 500-edit MEMIT batch")
    p.add_argument("--probe", type=int, default=10, help="edits in the probe batch extrapolated from (0: none)")
    p.add_argument("--rome-layer", type=int, default=None)
    p.add_argument("--rome-v-steps", type=int, default=None, help="ROME steps (default 25)")
    add_memit_args(p)
    p.set_defaults(v_steps=2)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_args(argv)
    setup(args)
    batch = 500 if args.big else args.memit_batch
    lm = load_model(args.model, progress=False)
    rome_hp = resolve_hparams("rome", lm.model, build_hparams("rome", {k: v for k, v in {
        "layer": args.rome_layer, "v_steps": args.rome_v_steps, "stats_tokens": args.stats_tokens,
        "context_templates": args.context_templates, "context_length": args.context_length}.items() if v is not None}))
    memit_hp = memit_hparams(lm.model, args)
    layers = sorted({rome_hp.layer, *memit_hp.layers})
    key_second_moments(lm.model, lm.tokenizer, lm.fingerprint, layers, args.stats_tokens, stats_dir=args.stats_dir,
                       progress=False)
    for hp in (rome_hp, memit_hp):
        context_templates(lm.model, lm.tokenizer, hp.context_templates, hp.context_length)
    base = rss_bytes()

    request = load_cases("counterfact", 1)[0].requests[0]
    context = EditContext(fingerprint=lm.fingerprint, stats_dir=args.stats_dir, progress=False)
    reset_peak_rss()
    with timer() as t:
        result = get_editor("rome").edit(lm.model, lm.tokenizer, [request], rome_hp, context)
    rome = {"peak_rss_bytes": peak_rss_bytes(), "seconds": t["s"], "steps": result.info["target_steps"][0]}
    rome["growth_bytes"] = rome["peak_rss_bytes"] - (base or 0)
    print(f"ROME: peak {mib(rome['peak_rss_bytes'])} MiB", flush=True)

    rows: list[dict[str, Any]] = []
    sizes = ([args.probe] if 0 < args.probe < batch else []) + [batch]
    for n in sizes:
        room = available_bytes()
        if rows and room is not None and not args.force:
            projected = projected_growth(rows[-1]["peak_growth_bytes"], rows[-1]["n"], n)
            if projected > 0.7 * room:
                print(f"MEMIT {n}: skipped, projected growth {mib(projected)} MiB > 70% of {mib(room)} MiB available",
                      flush=True)
                rows.append({"n": n, "skipped": True, "projected_growth_bytes": projected, "available_bytes": room})
                continue
        rows.append(run_batch(lm, memit_hp, n, args.stats_dir))
        print(f"MEMIT {n}: peak {mib(rows[-1]['peak_rss_bytes'])} MiB", flush=True)

    print()
    print(table(["what", "peak RSS MiB", "growth over model MiB", "seconds", "note"],
                [["model loaded (baseline)", mib(base), 0, "", ""],
                 ["ROME edit", mib(rome["peak_rss_bytes"]), mib(rome["growth_bytes"]), rome["seconds"],
                  f"{rome['steps']} steps"]]
                + [[f"MEMIT {r['n']} edits", mib(r["peak_rss_bytes"]), mib(r["peak_growth_bytes"]), r["seconds"],
                    f"{memit_hp.v_steps} steps"] if "seconds" in r else
                   [f"MEMIT {r['n']} edits", "skipped", mib(r["projected_growth_bytes"]), "",
                    f"projected; {mib(r['available_bytes'])} MiB available"] for r in rows]))
    met = rome["peak_rss_bytes"] <= ROME_TARGET_BYTES
    print(f"\ntarget ROME peak <= 2 GiB: {'met' if met else 'missed'} ({mib(rome['peak_rss_bytes'])} MiB)")
    payload = {"model": args.model, "baseline_rss_bytes": base, "rome": rome, "rome_layer": rome_hp.layer,
               "memit": rows, "memit_layers": list(memit_hp.layers),
               "memit_hparams": {"v_steps": memit_hp.v_steps, "context_templates": memit_hp.context_templates,
                                 "context_length": memit_hp.context_length},
               "rome_target_bytes": ROME_TARGET_BYTES, "rome_target_met": met}
    path = save("memory", payload, args.results_dir)
    print(f"\nsaved {path}")
    return payload


if __name__ == "__main__":
    main()

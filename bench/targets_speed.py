"""Cheaper MEMIT / AlphaEdit targets, measured: seconds per fact and quality, old and new
settings in the same run.

Each setting edits the same records as one batch (weights restored after), is timed (wall
and process CPU seconds, with the target optimisation's forward/backward split, tokens
per step and steps per fact) and scored with CounterFact's definitions on prefixed and
raw prompts, teacher-forced and generative. ``old`` is today's behaviour
(``v_prefix_cache = false``: whole prompts at every target step). Development records
are counterfact_500.json 450..469; report on others (e.g. 400..439). Writes
bench/results/targets_speed[TAG].json after every setting and skips settings it already
holds (resumable).

    OMP_NUM_THREADS=1 nice -n 5 python bench/targets_speed.py --start 450 --n 10 --tag _dev
"""

from __future__ import annotations

import cProfile
import json
import os
import time
from pathlib import Path
from typing import Any

from common import RESULTS, parser, profile_rows, save, setup

METRICS = ("reliability_cf", "generalization_cf", "locality_cf", "raw_reliability_cf", "raw_generalization_cf",
           "raw_locality_cf", "gen_reliability", "raw_gen_reliability")
DEFAULT_SETTINGS = "old:v_prefix_cache=false;new:"


def parse_settings(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``"old:v_prefix_cache=false;t5:context_templates=5"`` -> [(name, overrides), ...]."""
    out = []
    for chunk in text.split(";"):
        if not chunk.strip():
            continue
        name, _, body = chunk.partition(":")
        overrides: dict[str, Any] = {}
        for pair in filter(None, (p.strip() for p in body.split(","))):
            key, _, value = pair.partition("=")
            try:
                overrides[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                overrides[key.strip()] = value
        out.append((name.strip(), overrides))
    return out


def merge(folder: Path) -> None:
    """targets_speed.json: every tagged run's file under ``runs`` (the README rows read it)."""
    runs = {p.stem[len("targets_speed_"):]: json.loads(p.read_text())
            for p in sorted(folder.glob("targets_speed_*.json"))}
    first = next(iter(runs.values()), {})
    save("targets_speed", {"runs": runs, **({"machine": first["machine"]} if "machine" in first else {})}, folder)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--method", default="memit")
    p.add_argument("--start", type=int, default=450)
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--settings", default=DEFAULT_SETTINGS, help="';'-separated NAME:key=value,... (JSON values)")
    p.add_argument("--tag", default="")
    p.add_argument("--no-generative", action="store_true", help="skip the generative metrics")
    p.add_argument("--profile", action="store_true",
                   help="run each edit under cProfile; the top functions by cumulative time go in the row")
    p.add_argument("--merge", action="store_true",
                   help="only gather targets_speed_<tag>.json into targets_speed.json (runs by tag)")
    args = p.parse_args()
    if args.merge:
        merge(Path(args.results_dir or RESULTS))
        return
    setup(args)
    import torch

    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.common.targets import _build_batch, _split_at_subject
    from kedit_vc.editors.common.templates import context_templates
    from kedit_vc.editors.registry import build_hparams, resolve_hparams
    from kedit_vc.eval import score_requests, summarize
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.models import load_model

    name = f"targets_speed{args.tag}"
    path = Path(args.results_dir or RESULTS) / f"{name}.json"
    rows: list[dict[str, Any]] = []
    if path.exists():
        old = json.loads(path.read_text())
        if (old.get("start"), old.get("n"), old.get("method")) == (args.start, args.n, args.method):
            rows = old["rows"]
    done = {r["setting"] for r in rows}

    lm = load_model(args.model, progress=False)
    model, tok = lm.model, lm.tokenizer
    requests = [r for c in load_cases("counterfact")[args.start:args.start + args.n] for r in c.requests]
    generative = not args.no_generative
    pre = score_requests(model, tok, requests, prompts="both", generative=generative)
    params = dict(model.named_parameters())
    for setting, overrides in parse_settings(args.settings):
        if setting in done:
            print(f"{setting}: already measured, skipped", flush=True)
            continue
        hp = resolve_hparams(args.method, model, build_hparams(args.method, overrides))
        templates = context_templates(model, tok, hp.context_templates, hp.context_length, raw=hp.raw_context)
        whole = _build_batch(tok, [[r] for r in requests], templates)
        split = _split_at_subject(whole)
        load_before = os.getloadavg()
        profiler = cProfile.Profile() if args.profile else None
        wall, cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        result = get_editor(args.method).edit(model, tok, requests, hp,
                                              EditContext(fingerprint=lm.fingerprint, progress=False))
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        saved = {n: params[n].detach().clone() for n in result.delta.updates}
        result.delta.apply(model)
        post = score_requests(model, tok, requests, prompts="both", generative=generative)
        with torch.no_grad():
            for n, value in saved.items():
                params[n].copy_(value)
        report = summarize(post, pre)
        info = dict(result.info)
        row = {
            "setting": setting, "overrides": overrides, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
            "seconds_per_fact": round(wall / len(requests), 3), "cpu_seconds_per_fact": round(cpu / len(requests), 3),
            "threads": torch.get_num_threads(), "load_before": load_before, "load_after": os.getloadavg(),
            "templates": len(templates), "sequences_per_fact": len(templates) + 1,
            "prompt_tokens": {"mean": round(float(whole.mask.sum(-1).float().mean()), 2),
                              "padded_width": int(whole.ids.shape[1]),
                              "prefix_width": int(split.prefix.shape[1]) if split.prefix is not None else 0,
                              "suffix_width": int(split.ids.shape[1])},
            "info": info, "post": {m: report.metrics.get(m) for m in METRICS},
            "pre": {m: report.pre_metrics.get(m) for m in METRICS},
            **({"profile": profile_rows(profiler)} if profiler is not None else {}),
        }
        rows.append(row)
        print(json.dumps({"setting": setting, "s/fact": row["seconds_per_fact"],
                          "cpu s/fact": row["cpu_seconds_per_fact"],
                          "value_s": info.get("value_seconds"), "update_s": info.get("update_seconds"),
                          "fwd_s": info.get("target_forward_seconds"), "bwd_s": info.get("target_backward_seconds"),
                          "tokens": info.get("target_tokens"), "steps": info.get("target_request_steps"),
                          **{m: round(v, 3) for m, v in row["post"].items() if v is not None}}), flush=True)
        save(name, {"method": args.method, "model": args.model, "start": args.start, "n": len(requests),
                    "rows": rows}, args.results_dir)


if __name__ == "__main__":
    main()

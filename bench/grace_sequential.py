"""GRACE or WISE in a long sequential history: N single-edit commits, the live memory growing.

CounterFact records (the shared 500-record file, from ``--start``; 200.. are not used by any
test or sweep) are edited one at a time, each commit's codebook (``--method wise``: side-memory
increment) attached before the next edit, as ``kvc commit`` does. Every ``--every`` commits,
all edits so far are scored with the memory in place: efficacy, paraphrase and neighbourhood
(``reliability_cf``, ``generalization_cf``, ``locality_cf``) beside their pre-edit values. At
the end, greedy ``generate`` speed (tokens/s) on the plain model and with every entry live. To
fit a shared CPU, each edit is scored on its rewrite prompt, ``--paraphrases`` paraphrases and
``--neighbours`` neighbourhood prompts (CounterFact has 2 and 10; the editor is given only
the neighbourhood prompts that are not scored); ``--generative`` adds the
greedy-generation metrics (``gen_*``). Writes ``bench/results/<method>_sequential.json``.

    OMP_NUM_THREADS=1 python bench/grace_sequential.py --n 200 --every 50
    OMP_NUM_THREADS=1 python bench/grace_sequential.py --method wise --n 100 --every 25 --generative
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from typing import Any

from common import generate_speed, hparam_overrides, parser, save, setup, unscored

METRICS = ("reliability_cf", "generalization_cf", "locality_cf", "reliability", "locality_agree")
GEN_METRICS = ("gen_reliability", "gen_generalization", "gen_locality_agree")
METHODS = ("grace", "wise")


def arguments() -> Any:
    p = parser(__doc__)
    p.add_argument("--method", choices=METHODS, default="grace", help="the memory-based editor")
    p.add_argument("--generative", action="store_true", help="also score greedy generations (gen_* metrics)")
    p.add_argument("--n", type=int, default=200, help="sequential single-edit commits")
    p.add_argument("--every", type=int, default=50, help="score all edits so far every K commits")
    p.add_argument("--start", type=int, default=200, help="first CounterFact record")
    p.add_argument("--paraphrases", type=int, default=2, help="paraphrase probes scored per edit")
    p.add_argument("--neighbours", type=int, default=5, help="neighbourhood probes scored per edit")
    p.add_argument("--gen-tokens", type=int, default=32, help="tokens generated per prompt for the speed check")
    p.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE", help="editor override (JSON value)")
    p.add_argument("--name", default=None, help="results file name (default <method>_sequential)")
    return p.parse_args()


def trimmed(request: Any, paraphrases: int, neighbours: int) -> Any:
    kinds = {"rewrite": 10**6, "paraphrase": paraphrases, "neighbour": neighbours}
    kept: list[Any] = []
    for kind, limit in kinds.items():
        kept += [p for p in request.probes if p.kind == kind][:limit]
    return replace(request, probes=tuple(kept))


def main() -> None:
    import json

    args = arguments()
    setup(args)
    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.eval import score_requests, summarize
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.eval.scores import ProbeScores
    from kedit_vc.models import load_model
    from kedit_vc.patches.attach import side_patches

    overrides = hparam_overrides(args.hparam)
    hparams = build_hparams(args.method, overrides)
    metrics = METRICS + (GEN_METRICS if args.generative else ())
    lm = load_model(args.model, progress=False)
    cases = load_cases("counterfact")[args.start:args.start + args.n]
    full = [r for case in cases for r in case.requests][:args.n]
    requests = [trimmed(r, args.paraphrases, args.neighbours) for r in full]
    given = [unscored(r, args.neighbours) for r in full]
    pre_all = score_requests(lm.model, lm.tokenizer, requests, generative=args.generative)
    editor, side = get_editor(args.method), side_patches(lm.model)
    context = EditContext(fingerprint=lm.fingerprint, progress=False)
    curve: list[dict[str, Any]] = []
    seconds: list[float] = []
    trained: list[dict[str, Any]] = []   # WISE: each edit's steps and activations as trained
    entries = 0
    for done, request in enumerate(given, 1):
        began = time.perf_counter()
        result = editor.edit(lm.model, lm.tokenizer, [request], hparams, context)
        side.add(result.patches)
        seconds.append(time.perf_counter() - began)
        trained += [{k: e.get(k) for k in ("edit_id", "steps", "activation", "irrelevant_activation")}
                    for e in result.info.get("edits", ()) if "activation" in e]
        entries += result.info.get("entries_added", result.info.get("edits_added", 0))
        if done % args.every == 0 or done == len(requests):
            post = score_requests(lm.model, lm.tokenizer, requests[:done], generative=args.generative)
            report = summarize(post, ProbeScores(pre_all.edits[:done], pre_all.forms))
            row = {"edits": done, "entries": entries, "seconds_per_edit": round(sum(seconds) / done, 3),
                   "cpu_seconds": round(time.process_time(), 1), "load_1min": round(os.getloadavg()[0], 2),
                   "info": {k: v for k, v in result.info.items() if k in ("shards", "merges", "threshold")},
                   **{m: report.metrics.get(m) for m in metrics},
                   "pre": {m: report.pre_metrics.get(m) for m in metrics}}
            curve.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items() if k != "pre"}),
                  flush=True)
            write(args, overrides, lm, hparams, requests, seconds, curve, None, done == len(requests), trained)
    speed = {**generate_speed(lm, side, requests, args.gen_tokens), "live_entries": entries}
    print(json.dumps(speed))
    path = write(args, overrides, lm, hparams, requests, seconds, curve, speed, True, trained)
    print(f"wrote {path}")


def write(args: Any, overrides: dict[str, Any], lm: Any, hparams: Any, requests: list[Any], seconds: list[float],
          curve: list[dict[str, Any]], speed: dict[str, Any] | None, complete: bool,
          trained: list[dict[str, Any]]) -> Any:
    """Save the results so far (at every evaluation, so a stopped run leaves its curve)."""
    from kedit_vc.editors.registry import resolve_hparams

    return save(args.name or f"{args.method}_sequential", {
        "method": args.method, "generative": args.generative,
        "model": args.model, "hparams": overrides, "n": len(requests), "every": args.every,
        "start": args.start, "threads": args.threads,
        "probes": {"paraphrases": args.paraphrases, "neighbours": args.neighbours},
        "resolved_hparams": asdict(resolve_hparams(args.method, lm.model, hparams)), "complete": complete,
        "seconds_per_edit": round(sum(seconds) / len(seconds), 3), "generate": speed, "curve": curve,
        **({"trained": trained} if trained else {})},
        args.results_dir)


if __name__ == "__main__":
    main()

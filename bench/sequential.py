"""Sequential editing: does the model still hold edit 1 after edit N?

N CounterFact records are edited one commit at a time (or ``--batch`` per commit), each
delta applied before the next is solved, the way ``kvc commit`` builds a history: each
editor call gets the keys written by the earlier ones as ``preserved_keys`` (AlphaEdit
projects against them; MEMIT adds them to its normal equations; ROME and FT-L ignore them).
Every ``--every`` commits, all edits so far are scored: efficacy, paraphrase and
neighbourhood (``reliability_cf``, ``generalization_cf``, ``locality_cf``) beside their
pre-edit values, and optionally fluency. Writes ``sequential_<method><tag>.json`` and a
PNG curve, and redraws ``sequential.png`` over every method's results found.

    python bench/sequential.py --method alphaedit --n 40 --every 10 --stats-tokens 20000
    python bench/sequential.py --method memit --n 500 --every 50          # the full run
    python bench/sequential.py --benchmark counterfact5k --method ultraedit --n 1000 --batch 100 --every 1
    python bench/sequential.py --benchmark counterfact5k --method ultraedit --n 5000 --batch 100 --every 10 \
        --eval-sample 500                                   # 5,000 edits, 500 of them scored
    python bench/sequential.py --benchmark zsre --method rome --n 100 --every 100 --generative --tag _zsre_n100

Mass editing (issue 15): ``--benchmark counterfact5k`` reads CounterFact in EasyEdit's flat
format; each evaluation also scores raw prompts (no prefix token, as a user prompts the
exported model: ``raw_*``) and, with ``--generative``, greedy continuations (``gen_*``).
Method state carried by the history (UltraEdit's normalisation statistics) is summed
over the commits so far and handed to each edit, as ``kvc commit`` does. ``--resume``
re-applies the saved deltas of a stopped run (``<name>.deltas/``) and goes on after them.

Methods whose patches are not weight deltas (T-Patcher's and CaliNet's neurons, GRACE's
codebooks, WISE's side memory) have them attached before the next edit, as ``kvc commit``
does, and saved beside the deltas for ``--resume``; ``--gen-speed TOKENS`` then measures
greedy generation with them live against the plain model at the end.
``--given-neighbours K`` hands each editor the last K of a record's neighbourhood prompts
(editors that train against neighbours read them) and scores only the others.
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from common import generate_speed, parser, save, saved_patches, setup

METRICS = ("reliability_cf", "generalization_cf", "locality_cf")
LABELS = {"reliability_cf": "efficacy", "generalization_cf": "paraphrase", "locality_cf": "neighbourhood",
          "reliability_acc": "reliability (acc)", "generalization_acc": "generalization (acc)",
          "locality_agree": "locality (agree)", "portability_acc": "portability (acc)"}
#: Also recorded at each evaluation (not drawn): raw-prompt and generative forms.
EXTRA = ("raw_reliability_cf", "raw_generalization_cf", "raw_locality_cf", "gen_reliability", "gen_generalization",
         "gen_locality", "raw_gen_reliability")
#: zsRE's drawn metrics (token accuracy, agreement with the unedited model, one-hop portability).
ZSRE = ("reliability_acc", "generalization_acc", "locality_agree", "portability_acc")
ZSRE_EXTRA = ("reliability", "raw_reliability", "generalization", "raw_generalization", "portability",
              "raw_portability", "gen_reliability", "gen_generalization", "gen_locality_agree", "gen_portability",
              "raw_gen_reliability")


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def arguments() -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--method", required=True, help="a registered editing method (kvc bench --help lists them)")
    p.add_argument("--benchmark", default="counterfact", choices=["counterfact", "counterfact5k", "zsre"],
                   help="counterfact_500 (default), the flat 5k file for scale, or zsRE with portability")
    p.add_argument("--generative", action="store_true", help="also judge greedy continuations (gen_*)")
    p.add_argument("--resume", action="store_true", help="go on after the commits a stopped run saved")
    p.add_argument("--n", type=int, default=40, help="edits in all")
    p.add_argument("--every", type=int, default=10, help="evaluate all edits so far every K commits")
    p.add_argument("--batch", type=int, default=1, help="edits per commit")
    p.add_argument("--start", type=int, default=0, help="first CounterFact record (400.. is the dev set)")
    p.add_argument("--stats-tokens", type=int, default=None, help="key statistics sample (default: the method's)")
    p.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE",
                   help="hyperparameter override, JSON value (repeatable)")
    p.add_argument("--no-history", action="store_true", help="do not pass earlier edits' keys to the editor")
    p.add_argument("--fluency", type=int, default=0, help="generation prompts for fluency at each evaluation")
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--eval-sample", type=int, default=0,
                   help="score a fixed random sample (seed 0) of this many of the N edits: at each evaluation "
                        "the sampled ones done so far (0: every edit; for thousands of edits)")
    p.add_argument("--given-neighbours", type=int, default=0,
                   help="the last K neighbourhood prompts of each record go to the editor and are not scored")
    p.add_argument("--gen-speed", type=int, default=0, metavar="TOKENS",
                   help="at the end, greedy generate speed (TOKENS new tokens on 5 rewrite prompts) with every "
                        "attached patch live and without them (codebooks, side memories, neurons)")
    return p.parse_args()


def scored_sample(n: int, k: int) -> list[int]:
    """The indices (sorted) of the edits an evaluation scores: a seeded sample of ``k`` of ``n``
    (all when ``k`` is 0 or at least ``n``), the same in every run and on ``--resume``."""
    if k <= 0 or k >= n:
        return list(range(n))
    return sorted(random.Random(0).sample(range(n), k))


def drawn(benchmark: str) -> tuple[str, ...]:
    """The metrics a benchmark's curve draws."""
    return ZSRE if benchmark == "zsre" else METRICS


def evaluate(lm: Any, requests: list, pre: Any, prompts: list[str], generative: bool = False,
             benchmark: str = "counterfact") -> dict[str, Any]:
    """Scores of ``requests`` on the current weights, with their pre-edit values."""
    from kedit_vc.eval import score_requests, summarize
    from kedit_vc.eval.fluency import fluency

    post = score_requests(lm.model, lm.tokenizer, requests, prompts="both", generative=generative)
    report = summarize(post, pre)
    names = ZSRE + ZSRE_EXTRA if benchmark == "zsre" else METRICS + EXTRA
    row = {name: report.metrics.get(name) for name in names}
    row["pre"] = {name: report.pre_metrics.get(name) for name in names}
    if prompts:
        row["fluency"] = fluency(lm.model, lm.tokenizer, prompts)
    return row


def main() -> None:
    args = arguments()
    setup(args)
    import torch

    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.registry import build_hparams, resolve_hparams
    from kedit_vc.eval import score_requests
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.eval.fluency import fluency
    from kedit_vc.eval.scores import ProbeScores
    from kedit_vc.models import load_model
    from kedit_vc.ops.bench import split_neighbours
    from kedit_vc.patches.attach import side_patches

    overrides = dict(item.split("=", 1) for item in args.hparam)
    overrides = {k: _value(v) for k, v in overrides.items()}
    if args.stats_tokens is not None:
        overrides["stats_tokens"] = args.stats_tokens
    from kedit_vc.delta import Delta
    from kedit_vc.eval.efficiency import peak_rss_bytes

    hparams = build_hparams(args.method, overrides)
    lm = load_model(args.model, progress=False)
    cases = load_cases(args.benchmark)[args.start:args.start + args.n]
    pairs = [split_neighbours(r, args.given_neighbours) for case in cases for r in case.requests]
    requests, given = [scored for scored, _ in pairs], [handed for _, handed in pairs]
    prompts = [p for case in cases for p in case.generation_prompts][:args.fluency]
    if args.fluency and not prompts:  # the flat file has no generation prompts: use the rewrite prompts
        prompts = [r.prompt.replace("{}", r.subject, 1) for r in requests][:args.fluency]
    sample = scored_sample(len(requests), args.eval_sample)
    scored = [requests[i] for i in sample]
    name = f"sequential_{args.method}{args.tag}"
    saved = Path(args.results_dir or Path(__file__).resolve().parent / "results") / f"{name}.deltas"
    pre_all, pre_fluency = pre_edit(saved / "pre.json" if args.resume else None, sample,
                                    lambda: score_requests(lm.model, lm.tokenizer, scored, prompts="both",
                                                           generative=args.generative),
                                    lambda: fluency(lm.model, lm.tokenizer, prompts) if prompts else None)
    editor = get_editor(args.method)
    preserved: dict[int, torch.Tensor] = {}
    carried: dict[str, torch.Tensor] = {}
    curve, seconds = [], []
    patch_files: dict[str, list[tuple[str, str]]] = {}
    first = 0
    side = side_patches(lm.model)
    if args.resume and (saved / "state.json").is_file():
        state = json.loads((saved / "state.json").read_text())
        curve, seconds, first = state["curve"], state["seconds"], state["done"]
        patch_files = {k: [tuple(item) for item in v] for k, v in state.get("patches", {}).items()}
        for k in range(state["commits"]):
            Delta.load(saved / f"{k:05d}.safetensors").apply(lm.model)
        side.add(saved_patches(saved, state["commits"]))
        from safetensors.torch import load_file

        extra_state = load_file(str(saved / "history.safetensors")) if (saved / "history.safetensors").is_file() else {}
        preserved = {int(k.split("/")[1]): v for k, v in extra_state.items() if k.startswith("keys/")}
        carried = {k.removeprefix("carried/"): v for k, v in extra_state.items() if k.startswith("carried/")}
        print(f"resumed after {first} edits ({state['commits']} commits)", flush=True)
    saved.mkdir(parents=True, exist_ok=True)
    (saved / "pre.json").write_text(json.dumps({"sample": sample, "scores": pre_all.to_json(),
                                                "fluency": pre_fluency}))
    for start in range(first, len(requests), args.batch):
        chunk = given[start:start + args.batch]
        context = EditContext(fingerprint=lm.fingerprint, progress=False,
                              preserved_keys={} if args.no_history else dict(preserved), carried=dict(carried))
        began = time.perf_counter()
        result = editor.edit(lm.model, lm.tokenizer, chunk, hparams, context)
        delta = result.delta
        delta.apply(lm.model)
        side.add(result.patches)   # neurons, codebooks: live for the next edit and the scores
        seconds.append(time.perf_counter() - began)
        done, commits = start + len(chunk), start // args.batch + 1
        print(f"commit {commits}: {len(chunk)} edit(s) in {seconds[-1]:.1f}s", flush=True)
        for layer, keys in result.written_keys.items():
            keys = keys.detach().float()
            preserved[layer] = torch.cat([preserved[layer], keys]) if layer in preserved else keys
        for key, value in result.carried.items():
            value = value.detach().double()
            carried[key] = carried[key] + value if key in carried else value
        delta.save(saved / f"{commits - 1:05d}.safetensors")
        for i, patch in enumerate(result.patches):
            (saved / f"{commits - 1:05d}-{i}.patch").write_bytes(patch.to_bytes())
            patch_files.setdefault(str(commits - 1), []).append((f"{commits - 1:05d}-{i}.patch", patch.kind))
        if commits % args.every == 0 or done == len(requests):
            counted = bisect.bisect_left(sample, done)   # sampled edits done so far
            so_far = scored[:counted]
            pre = ProbeScores(pre_all.edits[:counted], pre_all.forms)
            row = {"edits": done, "commits": commits, "scored": counted, "peak_rss_bytes": peak_rss_bytes(),
                   "seconds_per_fact": round(sum(seconds) / done, 3),
                   **evaluate(lm, so_far, pre, prompts, args.generative, args.benchmark)}
            curve.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()
                              if k != "pre"}), flush=True)
            # Written at every evaluation, so an interrupted run still leaves its curve.
            summary = {
                "method": args.method, "model": args.model, "hparams": overrides,
                "resolved_hparams": asdict(resolve_hparams(args.method, lm.model, hparams)), "n": len(requests),
                "batch": args.batch, "every": args.every, "start": args.start, "benchmark": args.benchmark,
                "history": not args.no_history, "given_neighbours": args.given_neighbours,
                "complete": done == len(requests),
                "eval_sample": args.eval_sample,
                "pre_fluency": pre_fluency, "seconds_per_commit": round(sum(seconds) / len(seconds), 2),
                "curve": curve}
            path = save(name, summary, args.results_dir)
            from safetensors.torch import save_file

            history = {f"keys/{layer}": t.contiguous() for layer, t in preserved.items()}
            history.update({f"carried/{k}": t.contiguous() for k, t in carried.items()})
            if history:
                save_file(history, str(saved / "history.safetensors"))
            (saved / "state.json").write_text(json.dumps({"done": done, "commits": commits, "curve": curve,
                                                          "seconds": seconds, "patches": patch_files}))
            plot([path], path.with_suffix(".png"), drawn(args.benchmark))
            if args.benchmark != "zsre":
                plot([f for f in sorted(path.parent.glob("sequential_*.json"))
                      if json.loads(f.read_text()).get("benchmark") != "zsre"], path.parent / "sequential.png")
    if args.gen_speed and side.patches:
        summary["generate"] = {**generate_speed(lm, side, requests, args.gen_speed), "live_patches": len(side.patches)}
        print(json.dumps(summary["generate"]), flush=True)
        path = save(name, summary, args.results_dir)
    print(f"wrote {path}")


def pre_edit(path: Path | None, sample: list[int], score: Any, measure: Any) -> tuple[Any, Any]:
    """The unedited model's scores and fluency: read from a stopped run's ``pre.json`` when it
    scored the same sample (a 1,000-record run spends a quarter of an hour on them), else computed."""
    from kedit_vc.eval.scores import ProbeScores

    if path is not None and path.is_file():
        data = json.loads(path.read_text())
        if data.get("sample") == sample:
            print("pre-edit scores read from the stopped run", flush=True)
            return ProbeScores.from_json(data["scores"]), data.get("fluency")
    return score(), measure()


def plot(files: list[Path], out: Path, metrics: tuple[str, ...] = METRICS) -> None:
    """One panel per metric: a line per result file, its pre-edit value dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), sharey=True)
    for index, file in enumerate(files):
        data = json.loads(file.read_text())
        colour = f"C{index}"
        label = file.stem.removeprefix("sequential_")
        for ax, metric in zip(axes, metrics):
            xs = [row["edits"] for row in data["curve"]]
            ax.plot(xs, [row[metric] for row in data["curve"]], "o-", color=colour, label=label)
            ax.plot(xs, [row["pre"][metric] for row in data["curve"]], "--", color=colour, alpha=0.5)
    for ax, metric in zip(axes, metrics):
        ax.set_title(LABELS[metric])
        ax.set_xlabel("edits so far")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score (dashed: pre-edit)")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()

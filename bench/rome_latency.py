"""ROME edit latency against the floor of the same forward+backward passes, in one run.

For each of N CounterFact records (statistics computed once beforehand and cached, so
they are not timed) one ROME edit is made and its work split as the editor reports it:
key (k*), value optimisation (v*), update (solve). Beside each edit, on the same prompt
batch (every context template plus the KL prompt), the *floor* is timed: as many plain
forward+backward passes as the value optimisation took steps -- full forward through
every block, full-vocabulary logits at every position, gradient into an additive vector
at the edited MLP's output, an Adam step. That is what a straightforward implementation
(the reference ROME) pays per step; the target is edit latency <= 1.5x the floor.

The ablation times the per-step cost of the pass with and without each shortcut our
optimisation takes (replaying the blocks below the edit, LM head only at target
positions), and ``optimise_targets`` itself with LowerBlockReplay switched off.

    python bench/rome_latency.py --n 10
"""

from __future__ import annotations

import argparse
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F
from common import median, parser, save, setup, table, timer

from kedit_vc.editors.base import EditContext, get_editor
from kedit_vc.editors.common import targets as targets_module
from kedit_vc.editors.common.targets import TargetSettings, _build_batch, optimise_targets
from kedit_vc.editors.common.templates import context_templates
from kedit_vc.editors.registry import build_hparams, resolve_hparams
from kedit_vc.eval.datasets import load_cases
from kedit_vc.models import load_model
from kedit_vc.models.families import family_of, get_module
from kedit_vc.models.forward import LowerBlockReplay, final_hidden, logits_from_hidden
from kedit_vc.models.hooks import edit_output
from kedit_vc.stats import key_second_moments

TARGET_RATIO = 1.5


class _NoReplay:
    """Stands in for LowerBlockReplay: every forward runs every block."""

    def __init__(self, *_: Any) -> None: ...
    def __enter__(self) -> "_NoReplay": return self
    def __exit__(self, *_: Any) -> None: ...
    def arm(self) -> None: ...


def pass_seconds(model: torch.nn.Module, tokenizer: Any, request: Any, layer: int, templates: Any,
                 steps: int, replay: bool, at_targets: bool) -> float:
    """Seconds for ``steps`` forward+backward+Adam passes on the edit's prompt batch.

    ``replay``: blocks below ``layer`` run once and are replayed; ``at_targets``: the LM
    head only at target positions. Both False is the floor.
    """
    family = family_of(model)
    batch = _build_batch(tokenizer, [[request]], templates)
    module = get_module(model, family.mlp_path(layer))
    vector = torch.zeros(model.config.hidden_size, requires_grad=True)
    optimiser = torch.optim.Adam([vector], lr=0.5)
    context = LowerBlockReplay(model, layer) if replay else _NoReplay()
    with context as replayer, edit_output(module, lambda h: h + vector):
        with torch.no_grad():
            final_hidden(model, batch.ids, batch.mask)  # records the replayed blocks (untimed)
        replayer.arm()
        with timer() as t:
            for _ in range(steps):
                optimiser.zero_grad()
                if at_targets:
                    hidden = final_hidden(model, batch.ids, batch.mask)
                    logits = logits_from_hidden(model, hidden[batch.target_rows, batch.target_cols])
                    log_probs = F.log_softmax(logits.float(), -1)
                else:
                    logits = model(input_ids=batch.ids, attention_mask=batch.mask, use_cache=False).logits
                    log_probs = F.log_softmax(logits.float(), -1)[batch.target_rows, batch.target_cols]
                loss = -log_probs.gather(-1, batch.target_ids[:, None]).mean()
                loss.backward()
                optimiser.step()
    return t["s"]


def optimise_seconds(model: torch.nn.Module, tokenizer: Any, request: Any, layer: int, templates: Any,
                     hp: Any, steps: int, replay: bool) -> float:
    """Seconds of ``optimise_targets`` for exactly ``steps`` steps (no early stop)."""
    family = family_of(model)
    settings = TargetSettings(steps, hp.v_lr, hp.v_weight_decay, hp.kl_factor, hp.clamp_norm_factor,
                              early_stop_nll=-1.0)
    patch = mock.patch.object(targets_module, "LowerBlockReplay", LowerBlockReplay if replay else _NoReplay)
    with patch, timer() as t:
        optimise_targets(model, tokenizer, [request], family.mlp_path(layer), layer, templates, settings)
    return t["s"]


def build_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=10, help="number of edits (CounterFact records 0..n-1)")
    p.add_argument("--layer", type=int, default=None, help="edited layer (default: the model's ROME default)")
    p.add_argument("--v-steps", type=int, default=None, help="value optimisation steps (default 25)")
    p.add_argument("--context-templates", type=int, default=None)
    p.add_argument("--context-length", type=int, default=None)
    p.add_argument("--stats-tokens", type=int, default=4000,
                   help="covariance sample (cached before timing; latency does not depend on it)")
    p.add_argument("--stats-dir", default=None, help="statistics cache (default: the kvc cache)")
    p.add_argument("--ablation-edits", type=int, default=2, help="edits the ablation runs on (0: skip)")
    p.add_argument("--ablation-steps", type=int, default=10, help="steps per ablation variant")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_args(argv)
    setup(args)
    lm = load_model(args.model, progress=False)
    model, tok = lm.model, lm.tokenizer
    overrides = {k: v for k, v in {"layer": args.layer, "v_steps": args.v_steps, "stats_tokens": args.stats_tokens,
                                   "context_templates": args.context_templates,
                                   "context_length": args.context_length}.items() if v is not None}
    hp = resolve_hparams("rome", model, build_hparams("rome", overrides))
    layer = hp.layer
    with timer() as t_stats:
        key_second_moments(model, tok, lm.fingerprint, [layer], hp.stats_tokens, stats_dir=args.stats_dir,
                           progress=False)
    templates = context_templates(model, tok, hp.context_templates, hp.context_length)
    requests = [case.requests[0] for case in load_cases("counterfact", args.n)]
    editor = get_editor("rome")
    edits = []
    for index, request in enumerate(requests):
        context = EditContext(fingerprint=lm.fingerprint, stats_dir=args.stats_dir, progress=False)
        with timer() as t_edit:
            info = editor.edit(model, tok, [request], hp, context).info
        steps = int(info["target_steps"][0])
        # As many full passes as steps (an early-stopping last step runs no backward in the
        # editor, so this floor is, if anything, slightly generous).
        passes = steps
        floor = pass_seconds(model, tok, request, layer, templates, passes, replay=False, at_targets=False)
        row = {"edit_id": request.edit_id, "steps": steps, "floor_passes": passes, "floor_s": floor,
               "edit_s": t_edit["s"], **{k: info[f"{k}_seconds"] for k in ("key", "value", "update")}}
        row["kvu_s"] = row["key"] + row["value"] + row["update"]
        edits.append(row)
        print(f"edit {index + 1}/{len(requests)} {request.edit_id}: steps {steps}, key {row['key']:.2f}s, "
              f"value {row['value']:.2f}s, update {row['update']:.2f}s, floor {floor:.2f}s", flush=True)

    summary = {k: median([e[k] for e in edits]) for k in ("key", "value", "update", "kvu_s", "edit_s", "floor_s")}
    ratios = {"kvu_over_floor": median([e["kvu_s"] / e["floor_s"] for e in edits]),
              "value_over_floor": median([e["value"] / e["floor_s"] for e in edits]),
              "edit_over_floor": median([e["edit_s"] / e["floor_s"] for e in edits])}

    ablation: dict[str, Any] = {}
    if args.ablation_edits > 0:
        per_step: dict[str, list[float]] = {}
        variants = {"floor (all blocks, full logits)": (False, False), "replay only": (True, False),
                    "logits at targets only": (False, True), "replay + logits at targets": (True, True)}
        for request in requests[: args.ablation_edits]:
            for name, (replay, at_targets) in variants.items():
                s = pass_seconds(model, tok, request, layer, templates, args.ablation_steps, replay, at_targets)
                per_step.setdefault(name, []).append(s / args.ablation_steps)
            for name, replay in (("optimise_targets", True), ("optimise_targets without replay", False)):
                s = optimise_seconds(model, tok, request, layer, templates, hp, args.ablation_steps, replay)
                per_step.setdefault(name, []).append(s / args.ablation_steps)
        ablation = {name: median(v) for name, v in per_step.items()}

    print()
    print(table(["edits", "steps (median)", "key s", "value s", "update s", "key+value+update s",
                 "floor s", "ratio", f"target <= {TARGET_RATIO}"],
                [[len(edits), median([e["steps"] for e in edits]), summary["key"], summary["value"],
                  summary["update"], summary["kvu_s"], summary["floor_s"], ratios["kvu_over_floor"],
                  "met" if ratios["kvu_over_floor"] <= TARGET_RATIO else "missed"]]))
    print(f"\nwhole edit() call (templates cached, statistics read from cache): median {summary['edit_s']:.3f}s "
          f"= {ratios['edit_over_floor']:.2f}x floor; value optimisation alone {ratios['value_over_floor']:.2f}x floor")
    if ablation:
        base = ablation["floor (all blocks, full logits)"]
        print("\nAblation, seconds per optimisation step (forward+backward+Adam), same batch:")
        print(table(["variant", "s/step", "x floor"], [[k, v, v / base] for k, v in ablation.items()]))
    payload = {
        "model": args.model, "layer": layer, "n": len(edits), "records": f"counterfact 0..{len(edits) - 1}",
        "hparams": {"v_steps": hp.v_steps, "context_templates": hp.context_templates,
                    "context_length": hp.context_length, "stats_tokens": hp.stats_tokens},
        "stats_seconds_untimed": round(t_stats["s"], 3),
        "median_seconds": summary, "ratios": ratios, "target_ratio": TARGET_RATIO,
        "target_met": ratios["kvu_over_floor"] <= TARGET_RATIO,
        "edits": edits, "ablation_seconds_per_step": ablation, "ablation_steps": args.ablation_steps,
        "floor": "per edit: as many passes as its value optimisation took full steps, model(...).logits over "
                 "every position and the whole vocabulary, backward into a vector added at the MLP output, Adam",
    }
    path = save("rome_latency", payload, args.results_dir)
    print(f"\nsaved {path}")
    return payload


if __name__ == "__main__":
    main()

"""Why WISE edits stop holding in a sequential history: routing or interference?

N CounterFact records (from ``--start``) are edited one at a time with WISE, each commit's
side memory attached before the next edit. Then, with all N live, for each edit: its rewrite
sequence's activation on each live memory against that memory's threshold (one memory for
WISE-Merge; one per merge group with ``retrieve=true``), the memory the router picks (the
most activated whose threshold it reaches; ``own``: the one holding the edit's shard),
whether its target tokens are still the argmax, and how many of ``--neighbours`` of its
neighbourhood prompts are routed (the editor is given only the others). Writes
``bench/results/wise_routing[_<tag>].json``.

    OMP_NUM_THREADS=1 python bench/wise_routing.py --n 10
    OMP_NUM_THREADS=1 python bench/wise_routing.py --n 10 --hparam early_stop=false --tag full_steps
    OMP_NUM_THREADS=1 python bench/wise_routing.py --n 30 --start 450 --hparam shard_size=10 --hparam retrieve=true

``--from-run DIR`` reads the memory a ``bench/sequential.py --method wise`` run saved (its
``<name>.deltas/`` folder, the run's ``--start``/``--n`` given again) instead of editing
anew, so a 500-commit history is diagnosed in minutes:

    OMP_NUM_THREADS=1 python bench/wise_routing.py --start 0 --n 500 \
        --from-run bench/results/sequential_wise_n500.deltas --tag n500
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from common import hparam_overrides, parser, save, saved_patches, setup, unscored


def arguments() -> Any:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=10, help="sequential single-edit commits")
    p.add_argument("--start", type=int, default=200, help="first CounterFact record")
    p.add_argument("--neighbours", type=int, default=3, help="neighbourhood prompts measured per edit")
    p.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE", help="WISE override (JSON value)")
    p.add_argument("--tag", default="", help="suffix of the results file")
    p.add_argument("--from-run", default="", metavar="DIR",
                   help="a sequential.py run's saved deltas folder: diagnose its memory instead of editing")
    return p.parse_args()


def main() -> None:
    import torch

    args = arguments()
    setup(args)
    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.registry import build_hparams, resolve_hparams
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.models import load_model
    from kedit_vc.models.prompting import encode_continuation, encode_text
    from kedit_vc.patches.attach import side_patches
    from kedit_vc.patches.sidememory.live import activation, live_memory, pick

    overrides = hparam_overrides(args.hparam)
    hparams = build_hparams("wise", overrides)
    lm = load_model(args.model, progress=False)
    model, tok = lm.model, lm.tokenizer
    cases = load_cases("counterfact")[args.start:args.start + args.n]
    requests = [r for case in cases for r in case.requests][:args.n]
    given = [unscored(r, args.neighbours) for r in requests]   # WISE may train against what it is given
    side, editor = side_patches(model), get_editor("wise")
    context = EditContext(fingerprint=lm.fingerprint, progress=False)
    trained: list[dict[str, Any]] = []
    if args.from_run:   # the run kept no per-edit training figures: one empty record per edit
        side.add(saved_patches(Path(args.from_run), len(requests)))
        trained = [{} for _ in requests]
    for request in given[len(trained):]:
        result = editor.edit(model, tok, [request], hparams, context)
        side.add(result.patches)
        (edit,) = result.info["edits"]
        trained.append({"steps": edit["steps"], "activation": edit["activation"],
                        "irrelevant_activation": edit["irrelevant_activation"], "seconds": result.info["seconds"]})
    patches = list(side.patches)
    memory = live_memory(patches)[patches[0].module]
    shard_of = {edit_id: p.shard for p in patches for edit_id in p.edit_ids}

    def route(inputs: torch.Tensor) -> tuple[int | None, list[float]]:
        """(the memory the router picks or None, the activation on each memory)."""
        scores = torch.stack([activation(inputs, m.delta)[1][:1] for m in memory.memories])   # [k, 1]
        routed, best = pick(scores, [m.threshold for m in memory.memories])
        return (int(best[0]) if bool(routed[0]) else None), scores[:, 0].tolist()

    seen: dict[str, torch.Tensor] = {}
    handle = model.get_submodule(memory.module).register_forward_hook(
        lambda _m, a, _o: seen.__setitem__("a", a[0]))
    rows = []
    try:
        for request, train in zip(requests, trained):
            prompt = encode_text(tok, request.prompt.replace("{}", request.subject))
            target = encode_continuation(tok, " " + request.target_new)
            with torch.no_grad():
                out = model(input_ids=torch.tensor([prompt + target[:-1]])).logits[0, len(prompt) - 1:]
            picked, scores = route(seen["a"])
            own = next(k for k, m in enumerate(memory.memories) if shard_of[request.edit_id] in m.shards)
            neighbours, neighbours_routed = [], 0
            for probe in [p for p in request.probes if p.kind == "neighbour"][:args.neighbours]:
                with torch.no_grad():
                    model(input_ids=torch.tensor([encode_text(tok, probe.prompt)]))
                chosen, theirs = route(seen["a"])
                neighbours.append(round(max(theirs), 3))
                neighbours_routed += chosen is not None
            rows.append({"edit_id": request.edit_id, "target": request.target_new,
                         "activation_now": round(scores[own], 3),
                         "own_threshold": round(memory.memories[own].threshold, 3),
                         "routed": picked is not None, "routed_to_own": picked == own,
                         "holds": out.argmax(-1).tolist() == target,
                         "neighbour_activations": neighbours, "neighbours_routed": neighbours_routed, **train})
    finally:
        handle.remove()
    summary = {"routed": sum(r["routed"] for r in rows), "routed_to_own": sum(r["routed_to_own"] for r in rows),
               "holds": sum(r["holds"] for r in rows), "memories": len(memory.memories),
               "routed_but_lost": sum(r["routed"] and not r["holds"] for r in rows),
               "neighbours_routed": sum(r["neighbours_routed"] for r in rows),
               "neighbours": sum(len(r["neighbour_activations"]) for r in rows)}
    print(json.dumps(summary))
    path = save("wise_routing" + (f"_{args.tag}" if args.tag else ""), {
        "method": "wise", "model": args.model, "n": len(requests), "start": args.start, "hparams": overrides,
        "resolved_hparams": asdict(resolve_hparams("wise", model, hparams)), "threshold": memory.threshold,
        "thresholds": [m.threshold for m in memory.memories],
        "summary": summary, "edits": rows}, args.results_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

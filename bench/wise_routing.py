"""Why WISE-lite edits stop holding in a sequential history: routing or interference?

N CounterFact records (from ``--start``) are edited one at a time with WISE-lite, each
commit's side memory attached before the next edit. Then, with all N live, for each edit:
its rewrite sequence's activation against the live threshold (routed or not), whether its
target tokens are still the argmax, and the activation of ``--neighbours`` of its
neighbourhood prompts (the editor is given only the others). Writes ``bench/results/wise_routing[_<tag>].json``.

    OMP_NUM_THREADS=1 python bench/wise_routing.py --n 10
    OMP_NUM_THREADS=1 python bench/wise_routing.py --n 10 --hparam early_stop=false --tag full_steps
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from common import parser, save, setup, unscored


def arguments() -> Any:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=10, help="sequential single-edit commits")
    p.add_argument("--start", type=int, default=200, help="first CounterFact record")
    p.add_argument("--neighbours", type=int, default=3, help="neighbourhood prompts measured per edit")
    p.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE", help="WISE override (JSON value)")
    p.add_argument("--tag", default="", help="suffix of the results file")
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
    from kedit_vc.patches.sidememory.live import activation, live_memory

    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.hparam)}
    hparams = build_hparams("wise", overrides)
    lm = load_model(args.model, progress=False)
    model, tok = lm.model, lm.tokenizer
    cases = load_cases("counterfact")[args.start:args.start + args.n]
    requests = [r for case in cases for r in case.requests][:args.n]
    given = [unscored(r, args.neighbours) for r in requests]   # WISE may train against what it is given
    side, editor = side_patches(model), get_editor("wise")
    context = EditContext(fingerprint=lm.fingerprint, progress=False)
    trained = []
    for request in given:
        result = editor.edit(model, tok, [request], hparams, context)
        side.add(result.patches)
        (edit,) = result.info["edits"]
        trained.append({"steps": edit["steps"], "activation": edit["activation"],
                        "irrelevant_activation": edit["irrelevant_activation"], "seconds": result.info["seconds"]})
    patches = list(side.patches)
    memory = live_memory(patches)[patches[0].module]
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
            score = float(activation(seen["a"], memory.delta)[1][0])
            neighbours = []
            for probe in [p for p in request.probes if p.kind == "neighbour"][:args.neighbours]:
                with torch.no_grad():
                    model(input_ids=torch.tensor([encode_text(tok, probe.prompt)]))
                neighbours.append(round(float(activation(seen["a"], memory.delta)[1][0]), 3))
            rows.append({"edit_id": request.edit_id, "target": request.target_new, "activation_now": round(score, 3),
                         "routed": score >= memory.threshold, "holds": out.argmax(-1).tolist() == target,
                         "neighbour_activations": neighbours, "neighbours_routed": sum(
                             a >= memory.threshold for a in neighbours), **train})
    finally:
        handle.remove()
    summary = {"routed": sum(r["routed"] for r in rows), "holds": sum(r["holds"] for r in rows),
               "routed_but_lost": sum(r["routed"] and not r["holds"] for r in rows),
               "neighbours_routed": sum(r["neighbours_routed"] for r in rows),
               "neighbours": sum(len(r["neighbour_activations"]) for r in rows)}
    print(json.dumps(summary))
    path = save("wise_routing" + (f"_{args.tag}" if args.tag else ""), {
        "method": "wise", "model": args.model, "n": len(requests), "start": args.start, "hparams": overrides,
        "resolved_hparams": asdict(resolve_hparams("wise", model, hparams)), "threshold": memory.threshold,
        "summary": summary, "edits": rows}, args.results_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

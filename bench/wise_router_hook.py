"""How much WISE's router bug of sessions 7–17 moved teacher-forced scores: one memory, scored twice.

Scoring runs right-padded batches through the decoder stack (``models.forward.final_hidden``).
Until session 18 the router's attention mask and running sums were kept by a hook on the
model's own forward, which that path skips, so padding counted in a sequence's activation and
one call's sums carried into the next. This script builds one WISE memory (``--n`` sequential
edits of CounterFact from ``--start``, shards of ``--shard-size``, as ``grace_sequential.py``
does), then scores all its edits (rewrite, 2 paraphrase, 5 neighbourhood prompts) with the
hook on the decoder stack (today) and on the model (the old placement), on the same memory.

    OMP_NUM_THREADS=1 python bench/wise_router_hook.py --n 3
    OMP_NUM_THREADS=1 python bench/wise_router_hook.py --n 25
"""

from __future__ import annotations

from typing import Any

from common import parser, save, setup, unscored
from grace_sequential import trimmed

METRICS = ("reliability_cf", "generalization_cf", "locality_cf", "reliability", "locality_agree")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=3, help="sequential single-edit commits")
    p.add_argument("--start", type=int, default=200, help="first CounterFact record")
    p.add_argument("--shard-size", type=int, default=10, help="WISE shard_size")
    args = p.parse_args()
    setup(args)
    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.eval import score_requests, summarize
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.eval.scores import ProbeScores
    from kedit_vc.models import load_model
    from kedit_vc.patches.attach import side_patches
    from kedit_vc.patches.sidememory import live

    lm = load_model(args.model, progress=False)
    full = [r for case in load_cases("counterfact")[args.start:args.start + args.n] for r in case.requests][:args.n]
    requests = [trimmed(r, 2, 5) for r in full]
    pre = score_requests(lm.model, lm.tokenizer, requests)
    hparams = build_hparams("wise", {"shard_size": args.shard_size})
    editor, side = get_editor("wise"), side_patches(lm.model)
    for request in (unscored(r, 5) for r in full):
        context = EditContext(fingerprint=lm.fingerprint, progress=False)
        side.add(editor.edit(lm.model, lm.tokenizer, [request], hparams, context).patches)
    patches = list(side.patches)

    def scores() -> dict[str, Any]:
        report = summarize(score_requests(lm.model, lm.tokenizer, requests), ProbeScores(pre.edits, pre.forms))
        return {m: report.metrics.get(m) for m in METRICS}

    placements = {"decoder_stack": live._entry, "model_forward": lambda model: model}
    rows = {}
    for name, entry in placements.items():
        live._entry = entry          # where attach() puts the mask / running-sum hook
        side.clear()
        side.set(patches)
        rows[name] = scores()
        print(name, {k: round(v, 4) for k, v in rows[name].items()}, flush=True)
    live._entry = placements["decoder_stack"]
    path = save(f"wise_router_hook_n{args.n}", {"n": args.n, "start": args.start, "shard_size": args.shard_size,
                                                 "threads": args.threads, "scores": rows}, args.results_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

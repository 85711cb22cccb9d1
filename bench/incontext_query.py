"""Seconds per query with the edit memory live (context KV caches reused), against the plain model.

The memories of ``bench/incontext.py --n 6`` (zsRE 0-5, CounterFact 200-205, one commit per fact),
timed on 6 rewrite and neighbourhood prompts each: one forward (next-token logits) per prompt.
Writes ``bench/results/incontext_query.json``.

    OMP_NUM_THREADS=1 python bench/incontext_query.py
"""

from __future__ import annotations

import json
import time

from common import save


def main() -> None:
    import torch

    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.models import load_model
    from kedit_vc.models.prompting import encode_text
    from kedit_vc.patches.attach import side_patches

    torch.set_num_threads(1)
    lm = load_model("smollm2", progress=False)
    model, tok = lm.model, lm.tokenizer
    out = {}
    for bench, skip in (("zsre", 0), ("counterfact", 200)):
        requests = [r for c in load_cases(bench, 6, skip=skip) for r in c.requests][:6]
        prompts = [p.prompt for r in requests for p in r.probes if p.kind in ("rewrite", "neighbour")][:6]

        def per_query(prompts: list[str] = prompts) -> float:
            began = time.perf_counter()
            for prompt in prompts:
                with torch.no_grad():
                    model(input_ids=torch.tensor([encode_text(tok, prompt)]), use_cache=False)
            return (time.perf_counter() - began) / len(prompts)

        side = side_patches(model)
        side.clear()
        plain = per_query()
        for method in ("ike", "memprompt"):
            context = EditContext(fingerprint=lm.fingerprint, progress=False)
            patches = [p for r in requests
                       for p in get_editor(method).edit(model, tok, [r], build_hparams(method, {}), context).patches]
            side.set(patches)
            live = per_query()
            side.clear()
            out[f"{method}/{bench}"] = {"seconds_per_query_plain": round(plain, 4),
                                        "seconds_per_query_live_cached": round(live, 4)}
            print(json.dumps({f"{method}/{bench}": out[f"{method}/{bench}"]}), flush=True)
    print(save("incontext_query", {"model": "smollm2", "threads": 1, "n": 6, "prompts": 6, "results": out}))


if __name__ == "__main__":
    main()

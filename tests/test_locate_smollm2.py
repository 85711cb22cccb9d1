"""PMET on the real SmolLM2: an edit takes at the rewrite prompt's greedy answer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kedit_vc.compiler import compile_file
from kedit_vc.editors.base import EditContext, get_editor
from kedit_vc.editors.registry import build_hparams
from kedit_vc.models import load_model
from kedit_vc.models.prompting import encode_prompts

pytestmark = pytest.mark.slow

#: The default statistics sample: MEMIT's layers already have it cached (a 20,000-token
#: sample exists only for ROME's layer, and sampling one costs minutes).
STATS_TOKENS = 50_000
REPO = Path(__file__).resolve().parents[1]


def test_pmet_edit_changes_the_greedy_answer_and_leaves_the_model_as_found() -> None:
    lm = load_model("smollm2", progress=False)
    request = compile_file(REPO / "specs" / "demo.kedit").requests[0]
    before = {k: v.clone() for k, v in lm.model.state_dict().items() if "down_proj" in k}
    hp = build_hparams("pmet", {"stats_tokens": STATS_TOKENS})
    result = get_editor("pmet").edit(lm.model, lm.tokenizer, [request], hp,
                                     EditContext(fingerprint=lm.fingerprint, progress=False))
    assert all(torch.equal(v, lm.model.state_dict()[k]) for k, v in before.items())
    result.delta.apply(lm.model)
    try:
        ids, mask = encode_prompts(lm.tokenizer, [request.rewrite_prompt])
        out = lm.model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
        continuation = lm.tokenizer.decode(out[0, ids.shape[1]:])
        assert continuation.strip().startswith(request.target_new.split()[0]), continuation
    finally:
        with torch.no_grad():
            params = dict(lm.model.named_parameters())
            for name, value in before.items():
                params[name].copy_(value)


#: Five held-out CounterFact records (200-204: never used to choose a setting) and what
#: each method is documented to do on them (README, "Locate-and-patch"): PMET, T-Patcher and
#: CaliNet make the new object the greedy answer; Knowledge Neurons is weak on SmolLM2 and
#: is held only to what it is documented to reach (efficacy above its pre-edit value).
RECORDS = 200


@pytest.mark.parametrize("method", ["pmet", "tpatcher", "calinet", "kn"])
def test_each_locate_and_patch_method_takes_on_five_counterfact_facts(method: str) -> None:
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.ops.bench import run_bench

    lm = load_model("smollm2", progress=False)
    overrides = {"pmet": {"stats_tokens": STATS_TOKENS}}.get(method, {})
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    result = run_bench(lm.model, lm.tokenizer, "counterfact", load_cases("counterfact", 5, skip=RECORDS),
                       get_editor(method), build_hparams(method, overrides), fingerprint=lm.fingerprint,
                       given_neighbours=5)
    assert all(torch.equal(v, lm.model.state_dict()[k]) for k, v in before.items())  # restored exactly
    post, pre = result.report.metrics, result.report.pre_metrics
    if method == "kn":
        assert post["reliability_cf"] > pre["reliability_cf"], (post, pre)
        return
    assert post["reliability_cf"] == 1.0 and post["gen_reliability"] >= 0.8, (post, pre)
    assert pre["gen_reliability"] == 0.0
    # Neighbours (the five not handed to the editor) keep most of their answers.
    assert post["locality_cf"] >= pre["locality_cf"] - 0.3, (post, pre)

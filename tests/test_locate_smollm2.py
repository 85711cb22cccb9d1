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

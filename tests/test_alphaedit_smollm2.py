"""AlphaEdit on the real SmolLM2: thirty edits made one after another all still hold."""

from __future__ import annotations

import pytest
import torch

from kedit_vc.editors.base import EditContext, get_editor
from kedit_vc.editors.registry import build_hparams
from kedit_vc.eval import score_requests, summarize
from kedit_vc.eval.datasets import load_cases
from kedit_vc.models import load_model

pytestmark = pytest.mark.slow

STATS_TOKENS = 20_000  # as tests/test_editors_smollm2.py: one statistics pass serves both
N_EDITS = 30
#: Each edit alone takes; the bound leaves room for two whose target a later edit of a
#: near subject (CounterFact repeats relations and objects) pulls back below the foil.
MIN_HELD = 28


@pytest.fixture(scope="module")
def lm():  # noqa: ANN201
    return load_model("smollm2", progress=False)


def test_thirty_sequential_edits_all_still_take(lm) -> None:  # noqa: ANN001
    requests = [r for case in load_cases("counterfact", N_EDITS) for r in case.requests]
    pre = score_requests(lm.model, lm.tokenizer, requests)
    hp = build_hparams("alphaedit", {"stats_tokens": STATS_TOKENS, "v_steps": 20})
    editor = get_editor("alphaedit")
    params = dict(lm.model.named_parameters())
    saved: dict[str, torch.Tensor] = {}
    preserved: dict[int, torch.Tensor] = {}
    try:
        for request in requests:
            context = EditContext(fingerprint=lm.fingerprint, progress=False, preserved_keys=dict(preserved))
            result = editor.edit(lm.model, lm.tokenizer, [request], hp, context)
            delta = result.delta
            for name in delta.updates:
                saved.setdefault(name, params[name].detach().clone())
            delta.apply(lm.model)
            for layer, keys in result.written_keys.items():
                preserved[layer] = torch.cat([preserved[layer], keys]) if layer in preserved else keys
        assert all(keys.shape[0] == N_EDITS for keys in preserved.values())
        post = score_requests(lm.model, lm.tokenizer, requests)
        rewrites = [next(p for p in scores.probes if p.kind == "rewrite") for scores in post.edits]
        held = [r.beats_foil for r in rewrites]
        assert sum(held) >= MIN_HELD, [(q.subject, r.target_nll, r.foil_nll) for q, r, ok
                                       in zip(requests, rewrites, held) if not ok]
        # Measured on these records (session 7): paraphrase 0.98 (pre 0.33), neighbourhood
        # 0.667 against 0.670 before: the null-space projection keeps neighbours.
        report = summarize(post, pre)
        assert report.metrics["generalization_cf"] >= 0.85, report.metrics
        assert report.metrics["locality_cf"] >= 0.9 * report.pre_metrics["locality_cf"], report.metrics
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)

"""Editors on the real SmolLM2: the behaviour that matters (an edit takes, neighbours hold)."""

from __future__ import annotations

import pytest
import torch

from kedit_vc.editors.base import EditContext, get_editor
from kedit_vc.editors.registry import build_hparams
from kedit_vc.eval import score_requests, summarize
from kedit_vc.eval.datasets import load_cases
from kedit_vc.models import load_model
from kedit_vc.models.prompting import encode_prompts
from kedit_vc.ops.bench import run_bench

pytestmark = pytest.mark.slow

#: Statistics sample for tests: smaller than the default to keep CI short, shared by all
#: slow tests so one pass serves them.
STATS_TOKENS = 20_000
REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lm():  # noqa: ANN201
    return load_model("smollm2", progress=False)


def _greedy_first_word(lm, prompt: str) -> str:  # noqa: ANN001
    ids, mask = encode_prompts(lm.tokenizer, [prompt])
    out = lm.model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
    return lm.tokenizer.decode(out[0, ids.shape[1]:])


def _edit(lm, method: str, requests, **overrides):  # noqa: ANN001, ANN202
    hp = build_hparams(method, {"stats_tokens": STATS_TOKENS, **overrides})
    context = EditContext(fingerprint=lm.fingerprint, progress=False)
    return get_editor(method).edit(lm.model, lm.tokenizer, list(requests), hp, context).delta


def test_rome_with_subject_opening_the_prompt(lm) -> None:  # noqa: ANN001
    """The subject's first token must not sit at the attention sink (position 0)."""
    from kedit_vc.compiler.plan import EditRequest, Probe

    request = EditRequest("e-paris", "Paris", "{} is the capital of", "Italy", "France",
                          (Probe("rewrite", "Paris is the capital of", "Italy", "France"),
                           Probe("neighbour", "Berlin is the capital of", "Germany", "Italy"),
                           Probe("neighbour", "London is the capital of", "England", "Italy")))
    delta = _edit(lm, "rome", [request])
    pre = score_requests(lm.model, lm.tokenizer, [request])
    delta.apply(lm.model)
    try:
        post = score_requests(lm.model, lm.tokenizer, [request])
        assert post.edits[0].probes[0].beats_foil
        assert all(p.beats_foil for p in post.edits[0].probes[1:]), post.edits[0].probes[1:]
        assert pre.edits[0].probes[0].beats_foil is False
    finally:
        delta.inverse().apply(lm.model)


def test_memit_batch_of_twenty_counterfact_facts(lm) -> None:  # noqa: ANN001
    """One MEMIT batch of 20 facts: the new object beats the old and leads the greedy continuation."""
    cases = load_cases("counterfact", 20)
    requests = [r for case in cases for r in case.requests]
    pre = score_requests(lm.model, lm.tokenizer, requests)
    delta = _edit(lm, "memit", requests)
    before = {name: p.detach().clone() for name, p in lm.model.named_parameters() if name in delta.updates}
    delta.apply(lm.model)
    try:
        post = score_requests(lm.model, lm.tokenizer, requests)
        took = 0
        for request, scores in zip(requests, post.edits):
            rewrite = next(p for p in scores.probes if p.kind == "rewrite")
            if rewrite.beats_foil and _greedy_first_word(lm, request.rewrite_prompt).strip().startswith(
                    request.target_new.split()[0]):
                took += 1
        assert took >= 18, f"MEMIT took {took}/20"
        # Measured on these records (session 7, 20k statistics tokens): paraphrase 0.95
        # (pre 0.25), neighbourhood 0.74 against 0.765 before (0.97x).
        report = summarize(post, pre)
        assert report.metrics["generalization_cf"] >= 0.85, report.metrics
        assert report.metrics["locality_cf"] >= 0.9 * report.pre_metrics["locality_cf"], report.metrics
    finally:
        with torch.no_grad():
            params = dict(lm.model.named_parameters())
            for name, value in before.items():
                params[name].copy_(value)


def test_rome_on_twenty_counterfact_records(lm) -> None:  # noqa: ANN001
    """The benchmark path on real records: efficacy from the computed CounterFact metric."""
    hp = build_hparams("rome", {"stats_tokens": STATS_TOKENS})
    result = run_bench(lm.model, lm.tokenizer, "counterfact", load_cases("counterfact", 20), get_editor("rome"),
                       hp, fingerprint=lm.fingerprint)
    metrics, pre = result.report.metrics, result.report.pre_metrics
    assert metrics["reliability_cf"] >= 0.9, result.summary()
    assert metrics["reliability_cf"] > pre["reliability_cf"] + 0.5, result.summary()
    # Measured on these records (session 7, 20k statistics tokens): efficacy 0.95, paraphrase
    # 1.00 (pre 0.25), neighbourhood 0.735 against 0.765 before (0.96x); the floors leave one
    # record of efficacy and about nine of the 200 neighbour comparisons.
    assert metrics["generalization_cf"] >= 0.9, result.summary()
    assert metrics["locality_cf"] >= 0.9 * pre["locality_cf"], result.summary()

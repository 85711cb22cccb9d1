"""Teacher-forced scoring against direct computations on a tiny random Llama."""

from __future__ import annotations

import math

import pytest
import torch

from kedit_vc.compiler.plan import EditRequest, Probe
from kedit_vc.eval import ProbeScores, score_requests
from kedit_vc.eval.fluency import DEFAULT_PERPLEXITY_TEXT, generate, perplexity
from kedit_vc.eval.forward import encode_pair, score_continuations
from kedit_vc.models.prompting import prefix_ids
from test_eval_fixtures import direct_scores, tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


PAIRS = [
    ("the capital of France is", " Paris"),
    ("Eiffel Tower is located in the city of", " Rome"),
    ("Ghana is in", " Africa"),
    ("the Colosseum is in", " the city of Rome"),
    ("a", " b c d e f g"),
]


def test_prefix_is_eos_for_a_tokenizer_without_bos(tok):
    assert prefix_ids(tok) == [tok.eos_token_id]
    prompt_ids, cont = encode_pair(tok, "Ghana is in", " Africa")
    assert prompt_ids[0] == tok.eos_token_id and len(cont) == 1


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_nll_accuracy_argmax_match_direct_computation(model, tok, batch_size):
    scores = score_continuations(model, tok, PAIRS, batch_size=batch_size)
    for (prompt, cont), got in zip(PAIRS, scores):
        p, c = encode_pair(tok, prompt, cont)
        nll, argmax = direct_scores(model, p + c, len(p))
        assert got.nll == pytest.approx(nll, abs=1e-5)
        assert got.argmax_ids == tuple(argmax)
        assert got.target_ids == tuple(c)
        assert got.acc == pytest.approx(sum(a == t for a, t in zip(argmax, c)) / len(c))


def test_token_accuracy_on_hand_chosen_targets(model, tok):
    """Targets built from the model's own greedy choices give accuracy 1, 1/2 and 0."""
    prompt = "the capital of France is"
    p, _ = encode_pair(tok, prompt, " a")
    with torch.no_grad():
        first = int(model(torch.tensor([p])).logits[0, -1].argmax())
        second = int(model(torch.tensor([p + [first]])).logits[0, -1].argmax())
    words = tok.convert_ids_to_tokens([first, second])
    wrong = [w for w in ("Paris", "Rome", "Tokyo") if tok.convert_tokens_to_ids(w) not in (first, second)]
    both, half, none = (f" {words[0]} {words[1]}", f" {words[0]} {wrong[0]}", f" {wrong[0]} {wrong[1]}")
    got = score_continuations(model, tok, [(prompt, both), (prompt, half), (prompt, none)])
    assert [g.acc for g in got] == [1.0, 0.5, 0.0]
    assert got[0].argmax_ids == got[0].target_ids


def test_score_requests_keeps_order_and_scores_foils(model, tok):
    requests = [
        EditRequest("e1", "Eiffel Tower", "{} is located in the city of", "Rome", "Paris", (
            Probe("rewrite", "Eiffel Tower is located in the city of", "Rome", "Paris"),
            Probe("neighbour", "Ghana is in", "Africa", "Europe"),
        )),
        EditRequest("e2", "Kenya", "{} is in", "Asia", None, (Probe("hop", "Kenya is in", "Asia"),)),
    ]
    scores = score_requests(model, tok, requests, batch_size=3)
    assert [e.edit_id for e in scores.edits] == ["e1", "e2"]
    rewrite = scores.edits[0].probes[0]
    expected = score_continuations(model, tok, [(rewrite.prompt, " Rome"), (rewrite.prompt, " Paris")])
    assert rewrite.target_nll == pytest.approx(expected[0].nll, abs=1e-6)
    assert rewrite.foil_nll == pytest.approx(expected[1].nll, abs=1e-6)
    assert scores.edits[1].probes[0].foil_nll is None
    assert ProbeScores.loads(scores.dumps()) == scores


def test_scoring_restores_training_mode(model, tok):
    model.train()
    try:
        score_continuations(model, tok, PAIRS[:1])
        assert model.training
    finally:
        model.eval()


def test_perplexity_is_exp_mean_nll(model, tok):
    p, c = encode_pair(tok, "", DEFAULT_PERPLEXITY_TEXT)
    nll, _ = direct_scores(model, p + c, len(p))
    assert perplexity(model, tok) == pytest.approx(math.exp(nll), rel=1e-5)


def test_greedy_generation_is_prompt_plus_continuation(model, tok):
    (text,) = generate(model, tok, ["Ghana is in"], max_new_tokens=5)
    assert text.startswith("Ghana is in") and len(text) > len("Ghana is in")
    assert generate(model, tok, ["Ghana is in"], max_new_tokens=5) == [text]

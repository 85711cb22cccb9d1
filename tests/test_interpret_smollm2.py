"""Interpretability on SmolLM2: the behaviours issue 8 asks for (slow: real model).

Kept short: traces use two noise samples and a subset of layers or tokens. What the
full traces show is in the closing note of the issue: in SmolLM2 the Eiffel Tower fact
sits mostly on the middle subject token "iffel", while "Colosseum" shows the ROME
paper's picture (last subject token, layers 4-12, and the last prompt token late).
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.interpret import (causal_trace, explain_edit, logit_lens, plot_trace, selfie, suggest_layer)
from kedit_vc.interpret.plots import TRACE_SIZE_PX
from kedit_vc.interpret.tokens import locate_subject
from kedit_vc.models import load_model

pytestmark = pytest.mark.slow

EIFFEL = "The Eiffel Tower is located in the city of"
#: SelfIE readout of "Paris" at layer 6, greedy (recorded on CPU, float32).
PARIS_READOUT = "Paris is a city that has a rich history and culture, with a vibrant atmosphere"


@pytest.fixture(scope="module")
def smollm2():
    return load_model("smollm2", progress=False)


def test_logit_lens_last_layer_is_the_models_own_distribution(smollm2):
    model, tok = smollm2.model, smollm2.tokenizer
    loc = locate_subject(tok, EIFFEL, "Eiffel Tower")
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([list(loc.ids)])).logits[0].float(), dim=-1)  # [t, vocab]
    for position, index in (("subject", loc.last), ("last", len(loc.ids) - 1)):
        lens = logit_lens(model, tok, EIFFEL, "Eiffel Tower", ["Paris"], position=position, top_k=5)
        top_p, top_i = probs[index].topk(5)
        assert [t for t, _ in lens.top[-1]] == [tok.decode([int(i)]) for i in top_i]
        assert [p for _, p in lens.top[-1]] == pytest.approx(top_p.tolist(), abs=1e-4)
    assert lens.top[-1][0][0] == " Paris" and lens.ranks["Paris"][-1] == 1


def test_trace_eiffel_last_subject_token_beats_the_first(smollm2, tmp_path):
    model, tok = smollm2.model, smollm2.tokenizer
    layers = list(range(0, 21, 2))  # early and middle layers
    result = causal_trace(model, tok, EIFFEL, "Eiffel Tower", " Paris", samples=2, layers=layers, tokens=[1, 3])
    assert result.tokens[1:4] == (" E", "iffel", " Tower") and result.subject_span == (1, 4)
    assert result.clean_prob > 0.5 and result.corrupted_prob < 0.1
    first, last = result.scores[1], result.scores[result.last_subject]
    assert any(b > a for a, b in zip(first, last)), (first, last)
    path = plot_trace(result, tmp_path / "trace.png", suggested=suggest_layer(
        model, tok, EditRequest("e", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris"), samples=2))
    with Image.open(path) as image:
        assert image.size == TRACE_SIZE_PX == (1200, 600)


def test_trace_colosseum_and_suggested_layer(smollm2):
    model, tok = smollm2.model, smollm2.tokenizer
    prompt = "The Colosseum is located in the city of"
    result = causal_trace(model, tok, prompt, "Colosseum", "Rome", samples=2, layers=[2, 6, 10], tokens=[1, 3])
    assert result.tokens[result.last_subject] == "um"
    assert result.score(result.last_subject, 6) > 0.5 > result.score(1, 6)
    request = EditRequest("e", "Colosseum", "The {} is located in the city of", "London", "Rome")
    assert 3 <= suggest_layer(model, tok, request, samples=2) <= 9


def test_selfie_readout_of_paris(smollm2, tmp_path):
    model, tok = smollm2.model, smollm2.tokenizer
    readout = selfie(model, tok, "Paris", "Paris", 6)
    assert readout.text != readout.baseline  # the injection, not the prompt, decides what is said
    assert readout.text == PARIS_READOUT
    assert readout.tokens[0] == "Paris" and readout.relevancy[0] > 0.3
    assert selfie(model, tok, "Paris", "Paris", 6) == readout  # greedy: deterministic
    stored = tmp_path / "readout.json"
    stored.write_text(json.dumps(readout.to_json(), sort_keys=True))
    assert json.loads(stored.read_text())["text"] == PARIS_READOUT


@pytest.mark.parametrize("subject, prompt, new, old", [
    ("Eiffel Tower", "The {} is located in the city of", "Rome", "Paris"),
    ("Colosseum", "The {} is located in the city of", "London", "Rome"),
])
def test_rome_edit_explained(smollm2, subject, prompt, new, old):
    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.rome.hparams import RomeHparams

    model, tok = smollm2.model, smollm2.tokenizer
    request = EditRequest("e-demo", subject, prompt, new, old)
    delta = get_editor("rome").edit(model, tok, [request], RomeHparams(layer=4, stats_tokens=4000),
                                    EditContext(fingerprint=smollm2.fingerprint, progress=False)).delta
    weight = model.get_parameter("model.layers.4.mlp.down_proj.weight").detach().clone()
    result = explain_edit(model, tok, request, delta, max_new_tokens=8)
    assert torch.equal(model.get_parameter("model.layers.4.mlp.down_proj.weight"), weight)
    assert result.edited_layers == (4,) and result.selfie_layer == 7
    gain = result.rank_gain(new, "subject")
    assert all(g == 0 for g in gain[:4])  # below the edit nothing moves
    assert any(g > 0 for g in gain[4:]), gain  # at the edited layer or after, the new object rises
    assert result.after.lens_last.ranks[new][-1] == 1 < result.before.lens_last.ranks[new][-1]
    assert result.after.selfie.text != result.before.selfie.text

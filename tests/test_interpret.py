"""Interpretability tools on a tiny random Llama: shapes, plumbing, exact invariants.

The model is random, so nothing here expects a fact to be found; the tests check what
holds for any model (restoring the last state at the last layer gives the clean answer,
layers below an edit read the same before and after, the replay shortcut changes no
number) and that files, tables and the CLI come out right. SmolLM2 behaviour is in
``test_interpret_smollm2.py``.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager

import pytest
import torch
from PIL import Image

from conftest import run_kvc, write_spec

PROMPT = "The Eiffel Tower is located in the city of"
SUBJECT = "Eiffel Tower"


@pytest.fixture()
def tiny(tiny_model_dir):
    from kedit_vc.models import load_model

    return load_model(str(tiny_model_dir), progress=False)


def test_locate_subject_agrees_with_the_editors(tiny):
    from kedit_vc.editors.common.positions import subject_last_index
    from kedit_vc.errors import UsageError
    from kedit_vc.interpret.tokens import locate_subject

    loc = locate_subject(tiny.tokenizer, PROMPT, SUBJECT)
    assert loc.prefix == 1 and loc.ids[0] == tiny.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert (loc.start, loc.end) == (2, 4)
    assert loc.last == subject_last_index(tiny.tokenizer, "The {} is located in the city of", SUBJECT)
    assert locate_subject(tiny.tokenizer, "The {} is located in the city of", SUBJECT) == loc
    with pytest.raises(UsageError, match="does not occur"):
        locate_subject(tiny.tokenizer, PROMPT, "Colosseum")


def test_window_layers():
    from kedit_vc.interpret.trace import window_layers

    assert window_layers(3, "residual", 5, 30) == range(3, 4)
    assert window_layers(10, "mlp", 5, 30) == range(8, 13)
    assert window_layers(0, "attn", 5, 30) == range(0, 3)
    assert window_layers(29, "mlp", 4, 30) == range(27, 30)


def test_trace_shapes_and_invariants(tiny):
    from kedit_vc.interpret import causal_trace

    result = causal_trace(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, "Paris", samples=2)
    assert result.tokens == tuple(PROMPT.split()) and result.subject_span == (1, 3)
    assert result.layers == (0, 1, 2, 3) and len(result.scores) == len(result.tokens)
    assert all(len(row) == 4 and all(0 <= v <= 1 for v in row) for row in result.scores)
    assert result.scores[0] == (result.corrupted_prob,) * 4  # before the subject: noise cannot reach it
    # The last token's state at the last layer decides the next token: restoring it restores everything.
    assert result.scores[-1][-1] == pytest.approx(result.clean_prob, rel=1e-5)
    assert result.suggested_layer in result.layers
    again = causal_trace(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, "Paris", samples=2)
    assert again == result
    other = causal_trace(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, "Paris", samples=2, seed=1)
    assert other.corrupted_prob != result.corrupted_prob
    data = json.loads(json.dumps(result.to_json()))
    assert data["suggested_layer"] == result.suggested_layer and data["kind"] == "residual"


@pytest.mark.parametrize("kind", ["residual", "mlp", "attn"])
def test_trace_replay_shortcut_changes_nothing(tiny, kind, monkeypatch):
    """Starting at the restored layer from the recorded corrupted states equals a full forward."""
    import kedit_vc.interpret.trace as trace_module

    fast = trace_module.causal_trace(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, "Paris", kind=kind,
                                     samples=2, window=3)

    @contextmanager
    def no_replay(*_args, **_kwargs):
        yield

    monkeypatch.setattr(trace_module, "start_at", no_replay)
    slow = trace_module.causal_trace(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, "Paris", kind=kind,
                                     samples=2, window=3)
    for row_fast, row_slow in zip(fast.scores, slow.scores):
        assert row_fast == pytest.approx(row_slow, abs=1e-6)


def test_trace_subsets_and_errors(tiny):
    from kedit_vc.errors import UsageError
    from kedit_vc.interpret import causal_trace, logit_lens

    result = causal_trace(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, kind="mlp", samples=1, layers=[1, 3],
                          tokens=[2])
    assert result.layers == (1, 3) and result.window == 5
    assert all(math.isnan(v) for i, row in enumerate(result.scores) if i != 2 for v in row)
    assert not any(math.isnan(v) for v in result.scores[2])
    assert json.loads(json.dumps(result.to_json()))["scores"][0] == [None, None]
    assert result.suggested_layer in (1, 3)  # token 2 ("Tower") is the subject's last
    first_only = causal_trace(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, samples=1, layers=[0], tokens=[1])
    assert first_only.suggested_layer is None and first_only.to_json()["suggested_layer"] is None
    with pytest.raises(UsageError, match="lens position"):
        logit_lens(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, position="first")
    for bad in (dict(kind="mlps"), dict(layers=[4]), dict(tokens=[99]), dict(samples=0)):
        with pytest.raises(UsageError):
            causal_trace(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, **bad)


def test_suggest_layer(tiny):
    from kedit_vc.compiler.plan import EditRequest
    from kedit_vc.interpret import causal_trace, suggest_layer

    request = EditRequest("e-1", SUBJECT, "The {} is located in the city of", "Rome", "Paris")
    layer = suggest_layer(tiny.model, tiny.tokenizer, request, samples=2)
    full = causal_trace(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, "Paris", kind="mlp", samples=2)
    assert layer == full.suggested_layer


def test_logit_lens_last_layer_is_the_models_distribution(tiny):
    from kedit_vc.interpret import logit_lens
    from kedit_vc.interpret.tokens import locate_subject, target_ids

    loc = locate_subject(tiny.tokenizer, PROMPT, SUBJECT)
    with torch.no_grad():
        probs = torch.softmax(tiny.model(torch.tensor([list(loc.ids)])).logits[0].float(), dim=-1)
    for position, index in (("subject", loc.last), ("last", len(loc.ids) - 1)):
        lens = logit_lens(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, ["Paris", "Rome"], position=position,
                          top_k=3)
        assert lens.layers == 4 and all(len(row) == 3 for row in lens.top)
        top_p, top_i = probs[index].topk(3)
        assert [p for _, p in lens.top[-1]] == pytest.approx(top_p.tolist(), abs=1e-5)
        assert [t for t, _ in lens.top[-1]] == [tiny.tokenizer.decode([int(i)]) for i in top_i]
        paris = target_ids(tiny.tokenizer, "Paris")[0]
        assert lens.probs["Paris"][-1] == pytest.approx(float(probs[index, paris]), abs=1e-6)
        assert lens.ranks["Paris"][-1] == 1 + int((probs[index] > probs[index, paris]).sum())
    assert json.loads(json.dumps(lens.to_json()))["position"] == "last"


def test_interpretation_prompt_finds_the_placeholders(tiny):
    from kedit_vc.errors import UsageError
    from kedit_vc.interpret.readout import interpretation_prompt

    prompt = interpretation_prompt(tiny.tokenizer, "{} is the city of", placeholder="it", copies=3)
    it = tiny.tokenizer.convert_tokens_to_ids("it")
    assert [prompt.ids[p] for p in prompt.positions] == [it, it, it] and prompt.positions == (1, 2, 3)
    with pytest.raises(UsageError, match="no \\{\\}"):
        interpretation_prompt(tiny.tokenizer, "describe this")


def test_selfie_readout_plumbing(tiny):
    from kedit_vc.interpret import selfie, selfie_readout

    result = selfie(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, 1, instruction="{} is the city of",
                    placeholder="it", max_new_tokens=5)
    assert result.layer == 1 and result.subject == SUBJECT and result.source == PROMPT
    assert len(result.tokens) == len(result.relevancy) <= 5
    assert all(-1 <= r <= 1 for r in result.relevancy)
    assert selfie(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, 1, instruction="{} is the city of",
                  placeholder="it", max_new_tokens=5) == result
    # A state far from anything the prompt holds must change what is generated.
    loud = selfie_readout(tiny.model, tiny.tokenizer, torch.full((64,), 50.0), 1, instruction="{} is the city of",
                          placeholder="it", max_new_tokens=5)
    assert loud.text != loud.baseline and any(r != 0 for r in loud.relevancy)


def _random_delta(model, layer: int):
    from kedit_vc.delta import Delta, LowRank

    weight = model.get_parameter(f"model.layers.{layer}.mlp.down_proj.weight")  # [64, 128]
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(weight.shape[0], 1, generator=generator)
    right = torch.randn(weight.shape[1], 1, generator=generator)
    return Delta({f"model.layers.{layer}.mlp.down_proj.weight": LowRank(left, right)}, {"method": "test"})


def test_explain_edit_before_after(tiny):
    from kedit_vc.compiler.plan import EditRequest
    from kedit_vc.interpret import explain_edit

    request = EditRequest("e-1", SUBJECT, "The {} is located in the city of", "Rome", "Paris")
    before_weights = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    result = explain_edit(tiny.model, tiny.tokenizer, request, _random_delta(tiny.model, 1), max_new_tokens=4)
    assert all(torch.equal(before_weights[k], v) for k, v in tiny.model.state_dict().items())
    assert result.edited_layers == (1,) and result.selfie_layer == 2
    assert result.prompt == PROMPT and result.target_true == "Paris"
    # Block 0 runs before the edited MLP: it reads the same; blocks from 1 on do not.
    assert result.before.lens_subject.top[0] == result.after.lens_subject.top[0]
    assert result.before.lens_subject.probs["Rome"][1:] != result.after.lens_subject.probs["Rome"][1:]
    assert len(result.rank_gain("Rome")) == 4 and result.rank_gain("Paris", "last")[0] == 0
    data = json.loads(json.dumps(result.to_json()))
    assert data["edited_layers"] == [1] and set(data["after"]) == {"lens_subject", "lens_last", "selfie"}


def test_default_selfie_layer():
    from kedit_vc.interpret.explain import default_selfie_layer

    assert default_selfie_layer(30, (4,)) == 7
    assert default_selfie_layer(30, (3, 4, 5)) == 8
    assert default_selfie_layer(4, (3,)) == 3
    assert default_selfie_layer(30, ()) == 7


def test_plots_have_the_documented_size(tiny, tmp_path):
    from kedit_vc.compiler.plan import EditRequest
    from kedit_vc.interpret import causal_trace, explain_edit, logit_lens, plot_explanation, plot_lens, plot_trace
    from kedit_vc.interpret.plots import EXPLAIN_SIZE_PX, LENS_SIZE_PX, TRACE_SIZE_PX

    trace = causal_trace(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, "Paris", samples=1, layers=[0, 2])
    lens = logit_lens(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, ["Paris"])
    request = EditRequest("e-1", SUBJECT, "The {} is located in the city of", "Rome", "Paris")
    explanation = explain_edit(tiny.model, tiny.tokenizer, request, _random_delta(tiny.model, 1), max_new_tokens=3)
    for path, size in ((plot_trace(trace, tmp_path / "t.png", suggested=1), TRACE_SIZE_PX),
                       (plot_lens(lens, tmp_path / "l.png"), LENS_SIZE_PX),
                       (plot_explanation(explanation, tmp_path / "e.png"), EXPLAIN_SIZE_PX)):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.png", "l.png", "t.png"]  # no temporaries left


def test_render_tables(tiny):
    from kedit_vc.interpret import causal_trace, logit_lens
    from kedit_vc.interpret.render import render_lens, render_trace

    trace = causal_trace(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, "Paris", samples=1, tokens=[3])
    text = render_trace(trace)
    assert "Eiffel*" in text and "Tower*" in text and "  ." in text
    assert len(text.splitlines()) == 4 + len(trace.tokens)
    lens = render_lens(logit_lens(tiny.model, tiny.tokenizer, PROMPT, SUBJECT, ["Paris"]))
    assert len(lens.splitlines()) == 2 + 4 and "rank 'Paris'" in lens


def test_cli_trace(tiny_model_dir, project):
    result = run_kvc("trace", PROMPT, "--subject", SUBJECT, "--target", "Paris", "--model", str(tiny_model_dir),
                     "--samples", "1", "--kind", "attn", "-o", "trace.png")
    assert result.exit_code == 0, result.output
    assert "causal trace (attn output, window 5)" in result.stdout and "suggested edit layer:" in result.stdout
    with Image.open(project / "trace.png") as image:
        assert image.size == (1200, 600)
    data = json.loads(run_kvc("trace", PROMPT, "-s", SUBJECT, "--model", str(tiny_model_dir), "--samples", "1",
                              "--json").stdout)
    assert data["subject_span"] == [1, 3] and 0 <= data["suggested_layer"] < 4
    bad = run_kvc("trace", PROMPT, "-s", "Colosseum", "--model", str(tiny_model_dir))
    assert bad.exit_code == 2 and "does not occur" in bad.stderr


EIFFEL = 'edit "Eiffel Tower" prompt "The {subject} is located in the city of": "Paris" -> "Rome"'
TOKYO = 'edit "Tokyo" prompt "{subject} is the capital of": "Japan" -> "China"'


def test_cli_explain_spec(tiny_model_dir, project):
    spec = write_spec(project, "a.kedit", EIFFEL + "\n" + TOKYO)
    result = run_kvc("explain", "--spec", str(spec), "--model", str(tiny_model_dir), "-o", "explain.png")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("edited layers: [1]") == 2 and "before: SelfIE at layer 2" in result.stdout
    pngs = sorted(p.name for p in project.glob("explain-*.png"))
    assert len(pngs) == 2
    one = run_kvc("explain", "--spec", str(spec), "--model", str(tiny_model_dir), "--json", "--layer", "2",
                  "--edit", json.loads(run_kvc("compile", str(spec), "--json").stdout)["calls"][0]["requests"][1]["edit_id"])
    data = json.loads(one.stdout)
    assert len(data) == 1 and data[0]["subject"] == "Tokyo" and data[0]["selfie_layer"] == 2
    missing = run_kvc("explain", "--spec", str(spec), "--model", str(tiny_model_dir), "--edit", "e-nope")
    assert missing.exit_code == 2 and "no edit 'e-nope'" in missing.stderr


def test_cli_explain_commit(tiny_model_dir, project):
    assert run_kvc("init", "--model", str(tiny_model_dir)).exit_code == 0
    spec = write_spec(project, "a.kedit", EIFFEL)
    assert run_kvc("commit", str(spec), "--no-progress").exit_code == 0
    result = run_kvc("explain", "HEAD", "-o", "explain.png")
    assert result.exit_code == 0, result.output
    assert "'The Eiffel Tower is located in the city of' -> 'Rome' (was 'Paris')" in result.stdout
    with Image.open(project / "explain.png") as image:
        assert image.size == (1200, 900)
    assert run_kvc("explain").exit_code == 0  # HEAD by default
    initial = run_kvc("explain", "HEAD~1")
    assert initial.exit_code == 2 and "changes no weights" in initial.stderr
    both = run_kvc("explain", "HEAD", "--spec", str(spec))
    assert both.exit_code == 2 and "not both" in both.stderr

"""PMET and Knowledge Neurons on tiny random models: the formulas and the selection."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kedit_vc.compiler.plan import EditRequest, Probe
from kedit_vc.editors.base import EditContext, get_editor
from kedit_vc.editors.common.keys import subject_outputs
from kedit_vc.editors.common.templates import context_templates
from kedit_vc.editors.kn.attribution import integrated_gradients, refine
from kedit_vc.editors.kn.algorithm import column_delta, knowledge_neurons
from kedit_vc.editors.kn.hparams import resolve as resolve_kn
from kedit_vc.editors.pmet.algorithm import pmet_targets
from kedit_vc.editors.registry import build_hparams
from kedit_vc.models.families import family_of, get_module, weight_of
from kedit_vc.models.hooks import record_inputs
from kedit_vc.models.prompting import encode_continuation, encode_text
from tiny_models import tiny_family_model, tiny_tokenizer

REQUEST = EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris",
                      (Probe("rewrite", "The Eiffel Tower is located in the city of", "Rome", "Paris"),))
PROMPT = "The Eiffel Tower is located in the city of"


@pytest.fixture(scope="module")
def tok():  # noqa: ANN201
    return tiny_tokenizer()


def _model(kind: str = "llama") -> torch.nn.Module:
    return tiny_family_model(kind, d_model=32, d_mlp=64, vocab=300, layers=3, initializer_range=0.3)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_pmet_writes_the_mlp_target_and_its_square_root_share(kind: str, tok, tmp_path) -> None:  # noqa: ANN001
    """With a vanishing covariance weight each layer's solve meets its share exactly, so the
    last layer, whose share is the whole remainder (1/sqrt(1)), brings block L's MLP output
    at the subject to PMET's MLP target; and the first layer of two writes 1/sqrt(2) of the gap."""
    model = _model(kind)
    family = family_of(model)
    hp = build_hparams("pmet", {"layers": [0, 1], "v_steps": 10, "stats_tokens": 600, "context_templates": 0,
                                "mom2_weight": 1e-6})
    templates = context_templates(model, tok, 0, 0)
    _, target, _ = pmet_targets(model, tok, [REQUEST], 1, templates, hp, progress=False)
    before = subject_outputs(model, tok, [REQUEST], family.mlp_path(1))
    assert float((target - before).norm()) > 1e-3  # the optimisation moved the MLP target
    context = EditContext(fingerprint=f"tiny-{kind}", stats_dir=str(tmp_path), progress=False)
    delta = get_editor("pmet").edit(model, tok, [REQUEST], hp, context).delta
    # The first layer's write alone: its key's output moves by (z - h) / sqrt(2).
    first = type(delta)(updates={family.mlp_out_weight_name(0): delta.updates[family.mlp_out_weight_name(0)]})
    with record_inputs({"k": get_module(model, family.mlp_out_path(0))}) as seen:
        subject_outputs(model, tok, [REQUEST], family.mlp_path(0))
    last = encode_text(tok, "The Eiffel Tower")
    key = seen["k"][0, len(last) - 1].double()
    change = (delta.dense(family.mlp_out_weight_name(0)).double().T @ key if family.mlp_out_transposed
              else delta.dense(family.mlp_out_weight_name(0)).double() @ key)
    torch.testing.assert_close(change.float(), ((target - before) / 2 ** 0.5)[0], atol=2e-4, rtol=1e-3)
    first.apply(model)
    first.inverse().apply(model)
    delta.apply(model)
    after = subject_outputs(model, tok, [REQUEST], family.mlp_path(1))
    torch.testing.assert_close(after, target, atol=2e-4, rtol=1e-3)


def _plant(model: torch.nn.Module, tok, layer: int, neuron: int, answer: int) -> None:  # noqa: ANN001
    """Make ``neuron`` of ``layer`` fire on PROMPT's last token and push ``answer``'s logit."""
    family = family_of(model)
    ids = torch.tensor([encode_text(tok, PROMPT)])
    with record_inputs({"mlp": get_module(model, family.mlp_path(layer))}) as seen:
        model(input_ids=ids)
    x = seen["mlp"][0, -1]
    read = 3.0 * x / x.norm() ** 2          # gate . x = up . x = 3
    mlp = get_module(model, family.mlp_path(layer))
    unembed = weight_of(get_module(model, family.unembed))[answer]
    with torch.no_grad():
        weight_of(mlp.gate_proj)[neuron] = read
        weight_of(mlp.up_proj)[neuron] = read
        weight_of(mlp.down_proj)[:, neuron] = 4.0 * unembed / unembed.norm()


def test_kn_attribution_finds_a_planted_neuron(tok) -> None:  # noqa: ANN001
    model = _model()
    answer = encode_continuation(tok, " Paris")[0]
    _plant(model, tok, layer=1, neuron=7, answer=answer)
    probs = torch.softmax(model(input_ids=torch.tensor([encode_text(tok, PROMPT)])).logits[0, -1], -1)
    assert float(probs[answer]) > 0.5
    scores = integrated_gradients(model, encode_text(tok, PROMPT), answer, [0, 1, 2], steps=10)
    assert scores.shape == (3, 64)
    assert divmod(int(scores.argmax()), 64) == (1, 7)
    hp = build_hparams("kn", {"ig_steps": 10, "prompts": 0})
    request = EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris")
    neurons, old = knowledge_neurons(model, tok, request, ["{}"], resolve_kn(model, hp))
    assert old == encode_continuation(tok, " Paris")[0]
    assert neurons[0] == (1, 7)


def test_kn_patch_touches_only_the_selected_columns(tok) -> None:  # noqa: ANN001
    model = _model()
    hp = build_hparams("kn", {"ig_steps": 5, "prompts": 1, "context_length": 3, "max_neurons": 3})
    result = get_editor("kn").edit(model, tok, [REQUEST], hp, EditContext(progress=False))
    chosen = {(layer, neuron) for layer, neuron in result.info["neurons"][0]}
    assert 1 <= len(chosen) <= 3
    family = family_of(model)
    for layer in range(3):
        name = family.mlp_out_weight_name(layer)
        touched = set()
        if name in result.delta.updates:
            assert type(result.delta.updates[name]).__name__ == "LowRank"
            dense = result.delta.dense(name)
            touched = {(layer, int(c)) for c in torch.nonzero(dense.abs().sum(0)).flatten()}
        assert touched == {n for n in chosen if n[0] == layer}


@settings(max_examples=30, deadline=None)
@given(prompts=st.integers(1, 4), threshold=st.floats(0.0, 0.9), share=st.floats(0.0, 0.9),
       cap=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_refinement_keeps_voted_neurons_strongest_first(prompts: int, threshold: float, share: float, cap: int,
                                                       seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    scores = [torch.randn(3, 10, generator=generator) for _ in range(prompts)]
    picked = refine(scores, threshold, share, cap)
    stacked = torch.stack(scores)
    votes = ((stacked > threshold * stacked.flatten(1).max(1).values.clamp(min=0)[:, None, None])
             & (stacked > 0)).float().mean(0)
    assert 1 <= len(picked) <= cap
    assert len(set(picked)) == len(picked)
    mean = stacked.mean(0)
    if (votes > share).any():
        assert all(float(votes[layer, neuron]) > share for layer, neuron in picked)
        strengths = [float(mean[layer, neuron]) for layer, neuron in picked]
        assert strengths == sorted(strengths, reverse=True)
        # Nothing left out is stronger than the weakest kept one unless the cap cut it.
        if len(picked) < cap:
            assert int((votes > share).sum()) == len(picked)
    else:
        assert picked == [divmod(int(mean.flatten().argmax()), 10)]


@settings(max_examples=20, deadline=None)
@given(columns=st.dictionaries(st.integers(0, 2), st.sets(st.integers(0, 63), min_size=1, max_size=5),
                               min_size=1), seed=st.integers(0, 1000))
def test_column_delta_is_zero_outside_its_columns(columns: dict[int, set[int]], seed: int) -> None:
    model = tiny_family_model("llama", d_model=32, d_mlp=64, vocab=300, layers=3)
    generator = torch.Generator().manual_seed(seed)
    changes = {layer: {n: torch.randn(32, generator=generator) for n in neurons} for layer, neurons in columns.items()}
    delta = column_delta(model, changes)
    family = family_of(model)
    for layer, moves in changes.items():
        dense = delta.dense(family.mlp_out_weight_name(layer))
        for neuron in range(64):
            expected = moves.get(neuron, torch.zeros(32))
            torch.testing.assert_close(dense[:, neuron], expected)


def test_kn_defaults_resolve_per_model() -> None:
    """Open layers become the upper half of the blocks; the open write weight is the dev
    sweeps' choice for the model: 128, or 512 for a Gemma config (smaller LM-head rows)."""
    model = tiny_family_model("llama", d_model=16, d_mlp=32, vocab=300, layers=4)
    hp = resolve_kn(model, build_hparams("kn", {}))
    assert hp.layers == (2, 3) and hp.write_weight == 128.0
    model.config.model_type = "gemma3_text"  # same module layout (the llama family)
    assert resolve_kn(model, build_hparams("kn", {})).write_weight == 512.0
    assert resolve_kn(model, build_hparams("kn", {"write_weight": 8, "layers": [0]})).write_weight == 8

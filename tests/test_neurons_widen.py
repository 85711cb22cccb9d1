"""Widening the FFN to hold ``neurons`` patches (``kvc export --format hf``): for any set of
gated slots of the MLP's own form, the widened plain model gives the hooked model's logits;
neurons of another form (T-Patcher's biased ReLU) and ungated MLPs are refused."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import tiny_family_model

from kedit_vc.patches.neurons.core import NeuronPatch
from kedit_vc.patches.neurons.live import attach
from kedit_vc.patches.neurons.widen import mlp_activation, refusal, widened


def _patches(model: torch.nn.Module, counts: list[int], seed: int) -> list[NeuronPatch]:
    """Random gated slots of the model's own activation: ``counts[i]`` at layer ``i % layers``."""
    generator = torch.Generator().manual_seed(seed)
    width = model.config.hidden_size
    layers = model.config.num_hidden_layers
    out = []
    for i, n in enumerate(counts):
        def draw() -> torch.Tensor:
            return torch.randn(n, width, generator=generator)

        out.append(NeuronPatch(module=f"model.layers.{i % layers}.mlp", width=width,
                               ids=tuple(f"p{i}-{j}" for j in range(n)), keys=draw(), biases=torch.zeros(n),
                               values=draw(), activation=mlp_activation(model.config) or "", gated=True,
                               ups=draw(), meta={"method": "calinet"}))
    return out


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


@settings(max_examples=8, deadline=None)
@given(kind=st.sampled_from(["llama", "gemma3_text"]), counts=st.lists(st.integers(1, 5), min_size=1, max_size=4),
       seed=st.integers(0, 1000))
def test_a_widened_model_gives_the_hooked_models_logits(kind: str, counts: list[int], seed: int) -> None:
    from transformers import AutoModelForCausalLM

    model = tiny_family_model(kind, d_model=16, d_mlp=24, vocab=96, layers=3, initializer_range=0.2)
    patches = _patches(model, counts, seed)
    ids = torch.randint(3, 96, (2, 7), generator=torch.Generator().manual_seed(seed))
    base = _logits(model, ids)
    handles = attach(model, patches)
    hooked = _logits(model, ids)
    for handle in handles:
        handle.remove()
    assert not torch.allclose(hooked, base)
    state = model.state_dict()
    assert refusal(patches, model.config, state) is None
    wide, n = widened(state, patches)
    per_layer = [sum(len(p.ids) for p in patches if p.module == f"model.layers.{i}.mlp") for i in range(3)]
    assert n == max(per_layer)
    config = copy.deepcopy(model.config)
    config.intermediate_size += n
    plain = AutoModelForCausalLM.from_config(config).eval()
    plain.load_state_dict(wide)
    torch.testing.assert_close(_logits(plain, ids), hooked, rtol=1e-4, atol=1e-4)


def test_neurons_of_another_form_and_ungated_mlps_are_refused() -> None:
    model = tiny_family_model("llama", d_model=16, d_mlp=24, vocab=96, layers=3)
    state = model.state_dict()
    tpatcher = NeuronPatch(module="model.layers.2.mlp", width=16, ids=("t",), keys=torch.ones(1, 16),
                           biases=torch.ones(1), values=torch.ones(1, 16), meta={"method": "tpatcher"})
    assert "relu, ungated" in (refusal([tpatcher], model.config, state) or "")
    biased = _patches(model, [2], 0)[0]
    biased = NeuronPatch(module=biased.module, width=16, ids=biased.ids, keys=biased.keys, biases=torch.ones(2),
                         values=biased.values, activation=biased.activation, gated=True, ups=biased.ups)
    assert "bias" in (refusal([biased], model.config, state) or "")
    gpt2 = tiny_family_model("gpt2", d_model=16, d_mlp=24, vocab=96, layers=3)
    assert "not gated" in (refusal([tpatcher], gpt2.config, gpt2.state_dict()) or "")


@pytest.mark.parametrize("kind", ["llama", "gemma3_text"])
def test_no_patches_widen_by_nothing(kind: str) -> None:
    model = tiny_family_model(kind, d_model=16, d_mlp=24, vocab=96, layers=2)
    state = model.state_dict()
    wide, n = widened(state, [])
    assert n == 0 and all(torch.equal(wide[k], v) for k, v in state.items())

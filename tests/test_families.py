"""Family adapters on tiny random models of every supported architecture (no download).

Sizes are chosen all different (d_model 16, d_mlp 40, vocab 96, 3 layers) so a swapped
dimension cannot pass; GPT-2's Conv1D checks the transposed layout.
"""

from __future__ import annotations

import pytest
import torch

from kedit_vc.errors import ModelError
from kedit_vc.models.families import (
    decoder_stack,
    describe,
    dimensions,
    family_for_model_type,
    family_of,
    get_module,
    mlp_out_weight,
)
from kedit_vc.models.forward import LowerBlockReplay, final_hidden, logits_at, logits_from_hidden
from tiny_models import family_config

D_MODEL, D_MLP, VOCAB, LAYERS = 16, 40, 96, 3


def _config(kind: str):  # noqa: ANN202 - a transformers config of the given family
    return family_config(kind, D_MODEL, D_MLP, VOCAB, LAYERS)


KINDS = ["llama", "qwen2", "gemma3_text", "gpt2", "gptj", "gpt_neox"]
FAMILY_NAMES = {"llama": "llama", "qwen2": "llama", "gemma3_text": "llama", "gpt2": "gpt2",
                "gptj": "gptj", "gpt_neox": "gpt_neox"}


@pytest.fixture(scope="module", params=KINDS)
def tiny(request: pytest.FixtureRequest) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_config(request.param)).eval()
    model.requires_grad_(False)
    assert model.config.model_type == request.param
    return model


@pytest.fixture(scope="module")
def ids() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, VOCAB, (2, 7), generator=generator)
    mask = torch.ones_like(input_ids)
    mask[1, 5:] = 0  # one right-padded row, as encode_prompts makes
    return input_ids, mask


def test_family_detected(tiny: torch.nn.Module) -> None:
    assert family_of(tiny).name == FAMILY_NAMES[tiny.config.model_type]


def test_every_module_found(tiny: torch.nn.Module) -> None:
    family = family_of(tiny)
    for path in (family.base, family.embed, family.final_norm, family.unembed):
        assert isinstance(get_module(tiny, path), torch.nn.Module), path
    blocks = get_module(tiny, family.blocks)
    assert isinstance(blocks, torch.nn.ModuleList) and len(blocks) == LAYERS
    for layer in range(LAYERS):
        assert get_module(tiny, family.block_path(layer)) is blocks[layer]
        for path in (family.mlp_path(layer), family.attn_path(layer), family.mlp_out_path(layer),
                     f"{family.block_path(layer)}.{family.mlp_in}"):
            assert isinstance(get_module(tiny, path), torch.nn.Module), path
        assert family.mlp_out_weight_name(layer) in tiny.state_dict()
    # The output projection sits inside the MLP module, the input projection too.
    assert family.mlp_out.startswith(family.mlp + ".") and family.mlp_in.startswith(family.mlp + ".")


def test_shapes(tiny: torch.nn.Module) -> None:
    family = family_of(tiny)
    dims = dimensions(tiny)
    assert (dims.d_model, dims.d_mlp, dims.n_layers, dims.vocab) == (D_MODEL, D_MLP, LAYERS, VOCAB)
    for layer in range(LAYERS):
        weight = mlp_out_weight(tiny, layer)
        assert tuple(weight.shape) == (D_MODEL, D_MLP)  # Linear layout, Conv1D included
        stored = get_module(tiny, family.mlp_out_path(layer)).weight
        assert weight.data_ptr() == stored.data_ptr()  # a view: editing it edits the model
    mlp_in = get_module(tiny, f"{family.block_path(0)}.{family.mlp_in}").weight
    assert sorted(mlp_in.shape) == sorted((D_MODEL, D_MLP))
    assert get_module(tiny, family.embed).weight.shape == (VOCAB, D_MODEL)
    assert get_module(tiny, family.unembed).weight.shape == (VOCAB, D_MODEL)


def test_conv1d_is_transposed() -> None:
    from transformers import GPT2Config
    from transformers.pytorch_utils import Conv1D

    assert family_for_model_type("gpt2").mlp_out_transposed
    assert not any(family_for_model_type(t).mlp_out_transposed for t in KINDS if t != "gpt2")
    model = _gpt2()
    family = family_of(model)
    module = get_module(model, family.mlp_out_path(0))
    assert isinstance(module, Conv1D) and tuple(module.weight.shape) == (D_MLP, D_MODEL)
    # The Linear-layout view computes the same map as the Conv1D: y = W x.
    x = torch.randn(D_MLP)
    assert torch.allclose(mlp_out_weight(model, 0) @ x + module.bias, module(x[None])[0], atol=1e-5)
    assert isinstance(model.config, GPT2Config)


def _gpt2() -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(_config("gpt2")).eval()


def test_describe(tiny: torch.nn.Module) -> None:
    info = describe(tiny)
    assert info["family"] == FAMILY_NAMES[tiny.config.model_type]
    assert (info["layers"], info["d_model"], info["d_mlp"], info["vocab"]) == (LAYERS, D_MODEL, D_MLP, VOCAB)
    assert info["parameters"] == sum(p.numel() for p in tiny.parameters())
    assert "{i}" in info["edited_matrix"]


def test_decoder_stack_is_what_every_forward_passes_through(tiny: torch.nn.Module,
                                                           ids: tuple[torch.Tensor, torch.Tensor]) -> None:
    """The side memories' routers hook the decoder stack: it must hold the blocks but not the
    head, and the model's own forward must call it once with the ids it was given."""
    input_ids, mask = ids
    stack = decoder_stack(tiny)
    family = family_of(tiny)
    assert stack is get_module(tiny, family.base)
    assert any(module is get_module(tiny, family.blocks) for module in stack.modules())
    assert not any(module is get_module(tiny, family.unembed) for module in stack.modules())
    seen: list[torch.Tensor] = []
    handle = stack.register_forward_pre_hook(  # GPT-2-like families pass the ids positionally
        lambda _m, args, kwargs: seen.append(kwargs["input_ids"] if "input_ids" in kwargs else args[0]),
        with_kwargs=True)
    try:
        with torch.no_grad():
            tiny(input_ids=input_ids, attention_mask=mask)
    finally:
        handle.remove()
    assert len(seen) == 1 and torch.equal(seen[0], input_ids)


def test_final_hidden_and_head_match_logits(tiny: torch.nn.Module, ids: tuple[torch.Tensor, torch.Tensor]) -> None:
    input_ids, mask = ids
    with torch.no_grad():
        reference = tiny(input_ids=input_ids, attention_mask=mask).logits
        hidden = final_hidden(tiny, input_ids, mask)
        logits = logits_from_hidden(tiny, hidden)
        rows, cols = torch.tensor([0, 1, 1]), torch.tensor([6, 0, 4])
        picked = logits_at(tiny, input_ids, mask, rows, cols)
    assert hidden.shape == (2, 7, D_MODEL)
    valid = mask.bool()
    torch.testing.assert_close(logits[valid], reference[valid], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(picked, reference[rows, cols], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", [1, LAYERS - 1])
def test_lower_block_replay(tiny: torch.nn.Module, ids: tuple[torch.Tensor, torch.Tensor], layer: int) -> None:
    """Armed replay gives identical logits, really skips the lower blocks, and unpatches on exit."""
    input_ids, mask = ids
    family = family_of(tiny)
    lower = get_module(tiny, family.mlp_out_path(0)).weight
    with torch.no_grad():
        reference = tiny(input_ids=input_ids, attention_mask=mask).logits
        with LowerBlockReplay(tiny, layer) as replay:
            first = tiny(input_ids=input_ids, attention_mask=mask).logits
            replay.arm()
            armed = tiny(input_ids=input_ids, attention_mask=mask).logits
            saved = lower.clone()
            lower.mul_(0)  # block 0 is replayed, so this must not change anything
            skipped = tiny(input_ids=input_ids, attention_mask=mask).logits
            lower.copy_(saved)
        after = tiny(input_ids=input_ids, attention_mask=mask).logits
    torch.testing.assert_close(first, reference)
    torch.testing.assert_close(armed, reference)
    torch.testing.assert_close(skipped, reference)
    torch.testing.assert_close(after, reference)
    assert not any("forward" in vars(block) for block in get_module(tiny, family.blocks))


def test_lower_block_replay_of_a_subset_of_rows(tiny: torch.nn.Module, ids: tuple[torch.Tensor, torch.Tensor]) -> None:
    """``select`` replays some recorded rows, cut to their own width, as a fresh forward would."""
    input_ids, mask = ids
    rows = torch.tensor([1])            # the right-padded row: its width is cut from 7 to 5
    width = int(mask[1].sum())
    with torch.no_grad():
        reference = tiny(input_ids=input_ids[rows, :width], attention_mask=mask[rows, :width]).logits
        with LowerBlockReplay(tiny, 1) as replay:
            tiny(input_ids=input_ids, attention_mask=mask)
            replay.arm()
            replay.select(rows, width)
            subset = tiny(input_ids=input_ids[rows, :width], attention_mask=mask[rows, :width]).logits
    torch.testing.assert_close(subset, reference)


def test_unsupported_model_type_lists_supported() -> None:
    with pytest.raises(ModelError) as caught:
        family_for_model_type("mamba")
    message = str(caught.value)
    assert "'mamba'" in message and "llama" in message and "gpt2" in message and "gpt_neox" in message
    assert "FAMILIES" in message and "\n" not in message

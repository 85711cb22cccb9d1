"""T-Patcher on tiny random models: neurons that fire on the edit only, stored as a
``neurons`` patch that reverts bit-exactly, is verified by fsck and is refused by a plain
HuggingFace export."""

from __future__ import annotations

import pytest
import torch
from conftest import edited_logits, run_kvc, write_spec
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli_store import EIFFEL, FRANCE
from tiny_models import tiny_family_model, tiny_tokenizer

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.editors.base import EditContext, get_editor
from kedit_vc.editors.common.positions import other_subject_prompts
from kedit_vc.editors.registry import build_hparams
from kedit_vc.models.prompting import encode_continuation, encode_text
from kedit_vc.patches.neurons.core import NeuronPatch
from kedit_vc.patches.neurons.live import attach
from kedit_vc.patches.registry import PatchError

TINY_TPATCHER = "method tpatcher { memory_texts = 10 memory_length = 8 }"
REQUEST = EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris")
#: Prompts sharing no position with the edit's. Off the memory silence is learned, not
#: guaranteed: on the tiny GPT-2, "Tokyo is the capital of Japan" fires weakly (0.5 against
#: the edit's 3.5) at its last token.
UNRELATED = ("Jeff Bezos founded Amazon in Seoul", "Apple was founded by Steve Jobs")


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_the_neuron_takes_the_edit_and_is_silent_on_unrelated_prompts(kind: str) -> None:
    tok = tiny_tokenizer()
    model = tiny_family_model(kind, d_model=32, d_mlp=64, vocab=300, layers=3, initializer_range=0.3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hp = build_hparams("tpatcher", {"memory_texts": 20, "memory_length": 10})
    result = get_editor("tpatcher").edit(model, tok, [REQUEST], hp, EditContext(progress=False))
    assert result.delta.updates == {}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    (patch,) = result.patches
    assert patch.module.endswith(".2.mlp") and len(patch.ids) == 1  # the last block's MLP
    unrelated = [torch.tensor([encode_text(tok, text)]) for text in UNRELATED]
    with torch.no_grad():
        base = [model(input_ids=ids).logits for ids in unrelated]
    handles = attach(model, [patch])
    try:
        with torch.no_grad():
            prompt = encode_text(tok, REQUEST.rewrite_prompt)
            target = encode_continuation(tok, " Rome")
            assert int(model(input_ids=torch.tensor([prompt])).logits[0, -1].argmax()) == target[0]
            for ids, expected in zip(unrelated, base):
                assert torch.equal(model(input_ids=ids).logits, expected)  # the neuron adds exactly nothing
    finally:
        for handle in handles:
            handle.remove()


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 4), width=st.integers(1, 8), seed=st.integers(0, 1000), flip=st.integers(1, 200))
def test_a_neurons_file_round_trips_and_a_flipped_bit_is_refused(n: int, width: int, seed: int, flip: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    patch = NeuronPatch(module="model.layers.2.mlp", width=width, ids=tuple(f"n{i}" for i in range(n)),
                        keys=torch.randn(n, width, generator=generator), biases=torch.randn(n, generator=generator),
                        values=torch.randn(n, width, generator=generator), meta={"method": "tpatcher"})
    data = patch.to_bytes()
    back = NeuronPatch.from_bytes(data, expected_hash=patch.content_hash())
    assert back.content_hash() == patch.content_hash() and back.ids == patch.ids
    assert all(torch.equal(a, b) for a, b in zip(back.tensors().values(), patch.tensors().values()))
    bad = bytearray(data)
    bad[-min(flip, 4 * n)] ^= 0x01  # a bit inside the tensor data
    with pytest.raises(PatchError, match="altered or is corrupt"):
        NeuronPatch.from_bytes(bytes(bad))


def test_a_tpatcher_commit_reverts_bit_exactly_passes_fsck_and_is_not_exported(store) -> None:  # noqa: ANN001
    from conftest import TINY_ROME

    from kedit_vc.ops import CommitOptions, commit_spec, revert

    base = edited_logits(store)
    commit_spec(store, write_spec(store.paths.root, "rome.kedit", FRANCE, method=TINY_ROME), CommitOptions())
    rome = edited_logits(store)
    commit_spec(store, write_spec(store.paths.root, "tp.kedit", EIFFEL, method=TINY_TPATCHER), CommitOptions())
    record = store.read_commit("HEAD")
    assert record.patch_kinds == ("neurons",) and record.delta().updates == {}
    patched = edited_logits(store)
    assert not torch.equal(patched, rome)
    assert store.fsck() == []
    out = run_kvc("export", "HEAD", "--output", str(store.paths.root / "hf"))
    assert out.exit_code != 0 and "relu, ungated" in out.output and "load_edited" in out.output
    assert not (store.paths.root / "hf").exists()
    revert(store, "HEAD")
    assert torch.equal(edited_logits(store), rome)
    revert(store, "HEAD~2")
    assert torch.equal(edited_logits(store), base)
    revert(store, "HEAD")  # the ROME commit's revert, reverted
    revert(store, "HEAD~2")  # the T-Patcher commit's revert, reverted
    assert torch.equal(edited_logits(store), patched)
    assert store.fsck() == []


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_declared_neighbours_join_the_memory_and_the_neuron_stays_silent_on_them(kind: str) -> None:
    """A neighbour shares the edit's relation prompt (its last token is where a neuron keyed on
    the edit misfires); declared, its tokens join the memory the neuron must stay below."""
    from kedit_vc.compiler.plan import Probe

    tok = tiny_tokenizer()
    model = tiny_family_model(kind, d_model=32, d_mlp=64, vocab=300, layers=3, initializer_range=0.3)
    neighbour = Probe("neighbour", "The Louvre is located in the city of", "Paris", "Rome")
    request = EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris",
                          probes=(neighbour,))
    hp = build_hparams("tpatcher", {"memory_texts": 10, "memory_length": 8, "steps": 200, "template_memory": 0})
    result = get_editor("tpatcher").edit(model, tok, [request], hp, EditContext(progress=False))
    (info,) = result.info["neurons"]
    text = torch.tensor([encode_text(tok, f"{neighbour.prompt} {neighbour.target}")])
    assert info["neighbour_tokens"] == text.shape[1]
    with torch.no_grad():
        base = model(input_ids=text).logits
    handles = attach(model, list(result.patches))
    try:
        with torch.no_grad():
            assert torch.equal(model(input_ids=text).logits, base)   # silent on the declared neighbour
            prompt = encode_text(tok, request.rewrite_prompt)
            assert int(model(input_ids=torch.tensor([prompt])).logits[0, -1].argmax()) == \
                encode_continuation(tok, " Rome")[0]
    finally:
        for handle in handles:
            handle.remove()
    no_neighbours = build_hparams("tpatcher", {"memory_texts": 10, "memory_length": 8, "neighbour_memory": 0,
                                               "template_memory": 0})
    plain = get_editor("tpatcher").edit(model, tok, [request], no_neighbours, EditContext(progress=False))
    assert plain.info["neurons"][0]["neighbour_tokens"] == 0
    templated = build_hparams("tpatcher", {"memory_texts": 10, "memory_length": 8, "neighbour_memory": 0,
                                           "template_memory": 3})
    stand_ins = get_editor("tpatcher").edit(model, tok, [request], templated, EditContext(progress=False))
    expected = sum(len(encode_text(tok, text)) for text in other_subject_prompts(request, 3))
    assert stand_ins.info["neurons"][0]["neighbour_tokens"] == expected

"""CaliNet on tiny random models: calibration slots of the FFN's own form that take the edit
and move unrelated outputs only within a tolerance, stored as ``neurons`` patches (format
version 2) that round-trip, revert bit-exactly, pass fsck, are described by show/diff and
refuse a model of another shape."""

from __future__ import annotations

import pytest
import torch
from conftest import edited_logits, run_kvc, write_spec
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli_store import EIFFEL
from tiny_models import tiny_family_model, tiny_tokenizer

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.editors.base import EditContext, get_editor
from kedit_vc.editors.registry import build_hparams
from kedit_vc.models.prompting import encode_continuation, encode_text
from kedit_vc.patches.neurons.core import NeuronPatch
from kedit_vc.patches.neurons.live import attach
from kedit_vc.patches.registry import PatchError

TINY_CALINET = "method calinet { layers = [1, 2] slots = 4 memory_texts = 4 memory_length = 8 prompts = 1 }"
REQUEST = EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris")
UNRELATED = ("Jeff Bezos founded Amazon in Seoul", "Apple was founded by Steve Jobs", "Tokyo is the capital of Japan")
#: KL(base || edited) of the next-token distribution, in nats: the edit's own last position
#: must move by more than IN_SCOPE; every position of the unrelated prompts by less than
#: OUT_OF_SCOPE (their mean by less than a fifth of it). Slots are never exactly silent
#: (silu and gelu are not zero off their keys); measured: in-scope 3.1-4.7, unrelated max
#: 0.08-0.28, mean 0.01-0.03 (with 10 memory texts instead of 40: max 4.0, mean 0.53).
IN_SCOPE, OUT_OF_SCOPE = 2.0, 0.5


def _kl(base: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """KL(base || after) per position: [t] for log-probabilities [1, t, vocab]."""
    return (base.exp() * (base - after)).sum(-1)[0]


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_slots_take_the_edit_and_move_unrelated_prompts_only_within_tolerance(kind: str) -> None:
    tok = tiny_tokenizer()
    model = tiny_family_model(kind, d_model=32, d_mlp=64, vocab=300, layers=3, initializer_range=0.3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hp = build_hparams("calinet", {"layers": [1, 2], "slots": 8, "memory_length": 10})
    result = get_editor("calinet").edit(model, tok, [REQUEST], hp, EditContext(progress=False))
    assert result.delta.updates == {}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [p.module.split(".")[-2] for p in result.patches] == ["1", "2"]
    gated = kind == "llama"
    assert all(p.gated == gated and p.activation == ("silu" if gated else "gelu_tanh") for p in result.patches)
    assert all(len(p.ids) == 8 and float(p.biases.abs().max()) == 0.0 for p in result.patches)
    prompt = torch.tensor([encode_text(tok, REQUEST.rewrite_prompt)])
    target = encode_continuation(tok, " Rome")[0]
    unrelated = [torch.tensor([encode_text(tok, text)]) for text in UNRELATED]
    with torch.no_grad():
        base_prompt = model(input_ids=prompt).logits.log_softmax(-1)
        base = [model(input_ids=ids).logits.log_softmax(-1) for ids in unrelated]
    assert int(base_prompt[0, -1].argmax()) != target
    handles = attach(model, list(result.patches))
    try:
        with torch.no_grad():
            edited = model(input_ids=prompt).logits.log_softmax(-1)
            assert int(edited[0, -1].argmax()) == target
            assert float(_kl(base_prompt, edited)[-1]) > IN_SCOPE
            out_of_scope = torch.cat([_kl(expected, model(input_ids=ids).logits.log_softmax(-1))
                                      for ids, expected in zip(unrelated, base)])
            assert float(out_of_scope.max()) < OUT_OF_SCOPE and float(out_of_scope.mean()) < OUT_OF_SCOPE / 5
    finally:
        for handle in handles:
            handle.remove()


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 4), width=st.integers(1, 8), seed=st.integers(0, 1000), flip=st.integers(1, 200),
       activation=st.sampled_from(["silu", "gelu", "gelu_tanh", "relu"]), gated=st.booleans())
def test_a_slots_file_round_trips_and_a_flipped_bit_is_refused(n: int, width: int, seed: int, flip: int,
                                                               activation: str, gated: bool) -> None:
    generator = torch.Generator().manual_seed(seed)
    patch = NeuronPatch(module="model.layers.2.mlp", width=width, ids=tuple(f"s{i}" for i in range(n)),
                        keys=torch.randn(n, width, generator=generator), biases=torch.zeros(n),
                        values=torch.randn(n, width, generator=generator), meta={"method": "calinet"},
                        activation=activation, gated=gated,
                        ups=torch.randn(n, width, generator=generator) if gated else None)
    data = patch.to_bytes()
    back = NeuronPatch.from_bytes(data, expected_hash=patch.content_hash())
    assert back.content_hash() == patch.content_hash()
    assert (back.activation, back.gated, back.extended) == (activation, gated, activation != "relu" or gated)
    assert all(torch.equal(a, b) for a, b in zip(back.tensors().values(), patch.tensors().values()))
    assert list(back.tensors()) == list(patch.tensors())
    bad = bytearray(data)
    bad[-min(flip, 4 * n)] ^= 0x01  # a bit inside the tensor data
    with pytest.raises(PatchError, match="altered or is corrupt"):
        NeuronPatch.from_bytes(bytes(bad))


def test_a_relu_ungated_patch_keeps_version_1_bytes() -> None:
    """T-Patcher's files and hashes are what they were before activations were recorded."""
    patch = NeuronPatch(module="m", width=2, ids=("a",), keys=torch.ones(1, 2), biases=torch.zeros(1),
                        values=torch.ones(1, 2))
    assert b'"format_version":"1"' in patch.to_bytes() and "activation" not in patch.info()
    assert "activation" not in patch.describe()
    with pytest.raises(PatchError, match="ups"):
        NeuronPatch(module="m", width=2, ids=("a",), keys=torch.ones(1, 2), biases=torch.zeros(1),
                    values=torch.ones(1, 2), gated=True)
    with pytest.raises(PatchError, match="activation"):
        NeuronPatch(module="m", width=2, ids=("a",), keys=torch.ones(1, 2), biases=torch.zeros(1),
                    values=torch.ones(1, 2), activation="tanh")


def _assert_export_reproduces(store, patched: torch.Tensor) -> None:  # noqa: ANN001
    """The widened HF folder loads with plain transformers and gives ``load_edited``'s logits:
    4 slots at layers 1 and 2 become 4 more neurons of every MLP (layer 0's are zero)."""
    import json

    from transformers import AutoModelForCausalLM

    from kedit_vc import load_edited
    from kedit_vc.models.prompting import encode_text

    folder = store.paths.root / "hf"
    exported = AutoModelForCausalLM.from_pretrained(folder)
    assert json.loads((folder / "kvc-export.json").read_text())["mlp_neurons_added"] == 4
    mlps = [m for name, m in exported.named_modules() if name.endswith(".mlp")]
    assert {m.gate_proj.weight.shape[0] for m in mlps} == {exported.config.intermediate_size}
    added = [float(m.gate_proj.weight.detach()[-4:].abs().sum()) for m in mlps]
    assert added[0] == 0 < added[1]
    tokenizer = load_edited(store.paths.root, "HEAD")[1]
    ids = torch.tensor([encode_text(tokenizer, "The Eiffel Tower is located in the city of Paris")])
    with torch.no_grad():
        logits = exported(input_ids=ids).logits
    torch.testing.assert_close(logits, patched, rtol=1e-4, atol=1e-4)


def test_a_calinet_commit_is_shown_reverts_bit_exactly_passes_fsck_and_refuses_another_model(store) -> None:  # noqa: ANN001
    from kedit_vc.ops import CommitOptions, commit_spec, revert
    from kedit_vc.ops.inspect import show

    base = edited_logits(store)
    commit_spec(store, write_spec(store.paths.root, "cali.kedit", EIFFEL, method=TINY_CALINET), CommitOptions())
    record = store.read_commit("HEAD")
    assert record.patch_kinds == ("neurons", "neurons") and record.delta().updates == {}
    described = show(store, "HEAD")["patches"]
    assert [(d["activation"], d["gated"], d["method"], d["neurons_added"]) for d in described] == \
        [("silu", True, "calinet", 4)] * 2
    assert "calinet" in run_kvc("diff", "HEAD~1", "HEAD").output
    patched = edited_logits(store)
    assert not torch.equal(patched, base)
    assert store.fsck() == []
    out = run_kvc("export", "HEAD", "--output", str(store.paths.root / "hf"))
    assert out.exit_code == 0, out.output
    _assert_export_reproduces(store, patched)
    other = tiny_family_model("llama", d_model=48, d_mlp=64, vocab=300, layers=3)
    for patch in record.patches():
        with pytest.raises(PatchError, match="another model"):
            patch.check_model(other)
    revert(store, "HEAD")
    assert torch.equal(edited_logits(store), base)
    revert(store, "HEAD")  # the revert, reverted
    assert torch.equal(edited_logits(store), patched)
    assert store.fsck() == []


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_declared_neighbours_get_a_keep_term_and_barely_move(kind: str) -> None:
    """A neighbour shares the edit's relation prompt: without its own keep term the slots move
    its answer; with it (KL to the unedited model at the neighbour's last token), that
    next-token distribution stays within 0.05 nats (the early-stop bound) while the edit takes."""
    from kedit_vc.compiler.plan import Probe

    neighbour = Probe("neighbour", "The Louvre is located in the city of", "Paris", "Rome")
    request = EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris",
                          probes=(neighbour,))
    moved = {}
    for keep in (0, 5):
        tok = tiny_tokenizer()
        model = tiny_family_model(kind, d_model=32, d_mlp=64, vocab=300, layers=3, initializer_range=0.3)
        hp = build_hparams("calinet", {"layers": [1, 2], "slots": 8, "memory_length": 10, "neighbour_keep": keep})
        result = get_editor("calinet").edit(model, tok, [request], hp, EditContext(progress=False))
        text = torch.tensor([encode_text(tok, neighbour.prompt)])
        prompt = torch.tensor([encode_text(tok, request.rewrite_prompt)])
        with torch.no_grad():
            base = model(input_ids=text).logits.log_softmax(-1)
        handles = attach(model, list(result.patches))
        try:
            with torch.no_grad():
                moved[keep] = float(_kl(base, model(input_ids=text).logits.log_softmax(-1))[-1])
                assert int(model(input_ids=prompt).logits[0, -1].argmax()) == encode_continuation(tok, " Rome")[0]
        finally:
            for handle in handles:
                handle.remove()
    assert moved[5] <= 0.05 and moved[5] < moved[0], moved

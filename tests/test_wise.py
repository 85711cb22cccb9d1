"""WISE-lite side memories on a tiny random Llama, as commits beside weight deltas and codebooks.

The router sends an edit's prompt to the side memory and leaves unrelated prompts on the main
memory bit for bit; a mixed history (ROME, GRACE, WISE, revert of the GRACE commit)
materialises exactly as ROME's delta plus WISE's side memory applied afresh; a second WISE
commit continues the memory and its revert restores the first bit for bit; a corrupted
side-memory file is caught by fsck and refused; a memory made for another model is refused.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import TINY_ROME, run_kvc
from test_cli_store import EIFFEL, FRANCE, TOKYO
from test_patches import TINY_GRACE, commit, load, logits, rewrite_argmax_holds

# Margins scaled to the tiny model's activations (its MLP inputs are ~100x smaller than SmolLM2's).
TINY_WISE = "method wise { layer = 2 steps = 40 lr = 50.0 alpha = 0.05 beta = 0.5 gamma = 0.3 }"
UNRELATED = ("The capital of France is", "Tokyo is the capital of", "The Louvre is located in the city of")


def sidememory(record):
    (patch,) = [p for p in record.patches() if p.kind == "sidememory"]
    return patch


def test_a_wise_commit_routes_its_prompt_to_the_side_memory_and_unrelated_ones_to_the_main(store):
    from kedit_vc.ops import revert
    from kedit_vc.patches.sidememory.live import activation, live_memory

    base = load(store)
    result = commit(store, "a.kedit", EIFFEL, method=TINY_WISE)
    record = store.read_commit("HEAD")
    assert record.patch_kinds == ("sidememory",) and record.delta().updates == {}  # weights untouched
    patch = sidememory(record)
    assert patch.module == "model.layers.2.mlp.down_proj" and patch.edit_ids == (result.plan.requests[0].edit_id,)
    increment = patch.increment()
    assert bool((increment[~patch.bool_mask()] == 0).all()) and bool((increment != 0).any())  # sparse, masked
    assert 0.1 < patch.values.numel() / increment.numel() < 0.3  # mask_ratio 0.2

    edited = load(store)
    assert rewrite_argmax_holds(edited, result.plan.requests[0])
    memory = live_memory([patch])[patch.module]
    captured = {}
    module = edited.get_submodule(patch.module)
    handle = module.register_forward_hook(lambda _m, args, _o: captured.__setitem__("a", args[0]))
    try:
        for text, routed in [("The Eiffel Tower is located in the city of Rome", True)] + [(t, False) for t in UNRELATED]:
            out = logits(edited, text)
            _, score = activation(captured["a"], memory.delta)
            assert bool(score[0] >= memory.threshold) == routed, (text, float(score[0]), memory.threshold)
            assert torch.equal(out, logits(base, text)) != routed  # main memory: bit-identical logits
    finally:
        handle.remove()
    info = run_kvc("show", "HEAD")
    assert info.exit_code == 0 and "side memory at model.layers.2.mlp.down_proj: +1 edit(s), 1 held" in info.output
    assert store.fsck() == []
    revert(store, "HEAD")
    assert torch.equal(logits(load(store)), logits(base))  # bit-exact: the side memory is not live


def test_a_batch_with_padding_routes_each_sequence_as_it_would_alone(store):
    from kedit_vc.models.prompting import encode_text

    commit(store, "a.kedit", EIFFEL, method=TINY_WISE)
    model = load(store)
    tok = model_tokenizer()
    texts = ["The Eiffel Tower is located in the city of", "The capital of France is"]
    ids = [encode_text(tok, t) for t in texts]
    width = max(map(len, ids))
    batch = torch.tensor([[0] * (width - len(i)) + i for i in ids])  # left padding
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    with torch.no_grad():
        together = model(input_ids=batch, attention_mask=mask).logits[:, -1]
    for row, text in enumerate(texts):
        torch.testing.assert_close(together[row], logits(model, text)[0, -1], atol=1e-4, rtol=0)


def test_scoring_through_the_decoder_stack_routes_each_sequence_as_it_would_alone_call_after_call(store):
    """``kvc eval`` scores right-padded batches through the decoder stack (``final_hidden``),
    not the model's own forward: padding must not count in a sequence's activation, and one
    call's running sums must not leak into the next (an unrelated batch first, then one that
    holds the edit's sequence)."""
    from kedit_vc.models.forward import final_hidden, logits_from_hidden
    from kedit_vc.models.prompting import encode_text, pad_batch

    commit(store, "a.kedit", EIFFEL, method=TINY_WISE)
    model = load(store)
    tok = model_tokenizer()
    batches = [UNRELATED[:2], ("The Eiffel Tower is located in the city of Rome", UNRELATED[2] + " France")]
    scored = []
    for texts in batches:   # both calls first: a whole-model forward between them would reset the sums
        ids = [encode_text(tok, t) for t in texts]
        batch, mask = pad_batch(ids, 0)   # right padding, as the scorer pads
        with torch.no_grad():
            scored.append((texts, ids, final_hidden(model, batch, mask)))
    for texts, ids, hidden in scored:
        for row, text in enumerate(texts):
            last = logits_from_hidden(model, hidden[row, len(ids[row]) - 1][None])[0]
            torch.testing.assert_close(last, logits(model, text)[0, -1], atol=1e-4, rtol=0, msg=text)


def test_generate_with_a_kv_cache_routes_as_the_whole_sequence_would(store):
    """Each cached step is routed on the mean over the sequence so far, so greedy generation
    with the cache gives the tokens a full forward per step (no cache) gives."""
    from kedit_vc.models.prompting import encode_text

    commit(store, "a.kedit", EIFFEL, method=TINY_WISE)
    model = load(store)
    tok = model_tokenizer()
    for text in ("The Eiffel Tower is located in the city of", *UNRELATED):
        ids = torch.tensor([encode_text(tok, text)])
        with torch.no_grad():
            cached = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4,
                                    do_sample=False, pad_token_id=0)
            full = ids
            for _ in range(4):
                full = torch.cat([full, model(input_ids=full).logits[:, -1:].argmax(-1)], dim=1)
        assert cached.tolist() == full.tolist(), text


def model_tokenizer():
    from test_patches import _TOKENIZER

    return _TOKENIZER[0]


def test_mixed_history_rome_grace_wise_then_revert_grace_equals_rome_and_wise_applied_afresh(store, tiny_model_dir):
    from kedit_vc.models import load_model
    from kedit_vc.ops import revert
    from kedit_vc.patches.attach import side_patches

    commit(store, "rome.kedit", FRANCE, method=TINY_ROME)
    commit(store, "grace.kedit", TOKYO, method=TINY_GRACE)
    commit(store, "wise.kedit", EIFFEL, method=TINY_WISE)
    rome_sha, grace_sha, wise_sha = store.chain("HEAD")[1:4]
    revert(store, grace_sha)
    assert store.live_commits("HEAD") == [rome_sha, wise_sha]
    assert [p.kind for p in store.live_patches("HEAD")] == ["sidememory"]

    fresh = load_model(str(tiny_model_dir)).model
    store.read_commit(rome_sha).delta().apply(fresh)
    side_patches(fresh).set(store.read_commit(wise_sha).patches())
    model = load(store)
    for text in ("The Eiffel Tower is located in the city of Rome", "Tokyo is the capital of", *UNRELATED):
        assert torch.equal(logits(model, text), logits(fresh, text)), text
    assert store.fsck() == []
    d = run_kvc("diff", "HEAD~1", "HEAD")
    assert d.exit_code == 0 and "codebook" in d.output


def test_a_second_wise_commit_continues_the_memory_and_its_revert_restores_the_first_bit_for_bit(store):
    from kedit_vc.ops import revert

    commit(store, "a.kedit", EIFFEL, method=TINY_WISE)
    first = load(store)
    commit(store, "b.kedit", TOKYO, method=TINY_WISE)
    one, two = sidememory(store.read_commit("HEAD~1")), sidememory(store.read_commit("HEAD"))
    assert two.edits_before == 1 and torch.equal(two.mask, one.mask)  # same shard, same gradient mask
    assert not torch.equal(logits(load(store), "Tokyo is the capital of"), logits(first, "Tokyo is the capital of"))
    revert(store, "HEAD")
    again = load(store)
    for text in ("The Eiffel Tower is located in the city of Rome", "Tokyo is the capital of", *UNRELATED):
        assert torch.equal(logits(again, text), logits(first, text)), text


def test_a_corrupted_side_memory_is_detected_by_fsck_and_refused(store):
    from kedit_vc.errors import KvcError
    from kedit_vc.store import gitio, open_store

    commit(store, "a.kedit", EIFFEL, method=TINY_WISE)
    record = store.read_commit("HEAD")
    entry = record.manifest["patches"][0]
    assert entry["kind"] == "sidememory"
    files = {n: gitio.blob_bytes(b) for n, b in gitio.read_files(store.repo, record.sha).items()}
    data = bytearray(files[entry["file"]])
    data[-3] ^= 0x01  # one bit of the tensor data
    files[entry["file"]] = bytes(data)
    tree = gitio.write_tree(store.repo, files)
    bad = gitio.write_commit(store.repo, tree, [record.parent], record.message)
    gitio.set_ref(store.repo, gitio.branch_ref(store.repo), bad, record.sha, store.paths.tmp)
    with open_store(store.paths.root) as fresh:
        problems = fresh.fsck()
        assert any("altered or is corrupt" in p and entry["file"] in p for p in problems), problems
        with pytest.raises(KvcError, match="altered or is corrupt"):
            fresh.live_patches("HEAD")
    out = run_kvc("fsck")
    assert out.exit_code != 0 and "corrupt" in out.output


def _patch(module="model.layers.1.mlp.down_proj", in_dim=64, out_dim=32, seed=0):
    from kedit_vc.patches.sidememory.core import SideMemoryPatch

    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(out_dim, in_dim, generator=g) < 0.2
    increment = torch.randn(out_dim, in_dim, generator=g) * mask
    return SideMemoryPatch.from_dense(module, increment, mask, torch.tensor([1.5]), ("e",), 0.88, 0.2)


def test_a_side_memory_for_another_model_is_refused_on_load():
    from kedit_vc.patches import PatchError
    from kedit_vc.patches.attach import side_patches
    from tiny_models import tiny_family_model

    model = tiny_family_model("llama", seed=0, d_model=32, d_mlp=64, vocab=300, layers=3)
    side_patches(model).set([_patch()])  # the right widths attach
    side_patches(model).clear()
    with pytest.raises(PatchError, match="another model"):
        side_patches(model).set([_patch(in_dim=128)])
    with pytest.raises(PatchError, match="no module"):
        side_patches(model).set([_patch(module="model.layers.9.mlp.down_proj")])
    assert side_patches(model).patches == []


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), out_dim=st.integers(1, 9), in_dim=st.integers(1, 9))
def test_a_side_memory_file_round_trips_and_any_flipped_bit_is_refused(seed, out_dim, in_dim):
    from kedit_vc.patches import PatchError
    from kedit_vc.patches.sidememory.core import SideMemoryPatch, pack_mask, unpack_mask

    patch = _patch("m", in_dim, out_dim, seed)
    assert torch.equal(unpack_mask(pack_mask(patch.bool_mask()), in_dim * out_dim), patch.bool_mask().reshape(-1))
    data = patch.to_bytes()
    back = SideMemoryPatch.from_bytes(data, expected_hash=patch.content_hash())
    assert torch.equal(back.increment(), patch.increment()) and back.describe() == patch.describe()
    flipped = bytearray(data)
    flipped[len(data) - 1 - seed % 8] ^= 1 << (seed % 8)
    with pytest.raises(PatchError):
        SideMemoryPatch.from_bytes(bytes(flipped))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 10.0))
def test_the_router_leaves_a_sequence_below_threshold_bit_for_bit_and_adds_the_side_part_above(seed, scale):
    from kedit_vc.patches.sidememory.live import activation, routed_output

    g = torch.Generator().manual_seed(seed)
    delta = torch.randn(5, 8, generator=g)
    inputs = torch.randn(3, 4, 8, generator=g) * scale
    output = torch.randn(3, 4, 5, generator=g)
    side, score = activation(inputs, delta)
    threshold = float(score.median())
    out = routed_output(inputs, output, delta, threshold)
    for row in range(3):
        if score[row] >= threshold:
            assert torch.equal(out[row], output[row] + side[row])
        else:
            assert torch.equal(out[row], output[row])
    assert routed_output(inputs, output, delta, float(score.max()) + 1) is output

"""GRACE's codebook on tiny models: deferral leaves the layer bit for bit, expansion and
splitting act as the paper says, changes to earlier entries are owned by the later commit
(so dropping it restores them), and the codebook file round-trips."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kedit_vc.compiler.plan import EditRequest, Probe
from kedit_vc.editors.grace.algorithm import SPLIT_MARGIN, Codebook, Entry
from kedit_vc.patches.codebook.core import CodebookPatch
from kedit_vc.patches.codebook.live import codebook_output, live_entries


def _patch(ids, keys, values, radii, labels, adjusted=(), adjusted_radii=(), adjusted_values=None, module="m"):
    return CodebookPatch(module, keys.shape[1], values.shape[1], tuple(ids), keys, values,
                         torch.tensor(radii, dtype=torch.float32), tuple(labels), tuple(adjusted),
                         torch.tensor(adjusted_radii, dtype=torch.float32),
                         adjusted_values if adjusted_values is not None else torch.zeros(0, values.shape[1]))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), radius=st.floats(0.01, 2.0))
def test_inputs_outside_every_radius_leave_the_output_bit_for_bit(seed, n, radius):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(n, 8, generator=g) * 10
    values = torch.randn(n, 5, generator=g)
    radii = torch.full((n,), radius)
    inputs = torch.randn(2, 7, 8, generator=g) * 10 + 100  # far from every key
    output = torch.randn(2, 7, 5, generator=g)
    assert torch.equal(codebook_output(inputs, output, keys, values, radii), output)
    near = inputs.clone()
    near[1, 3] = keys[0] + radius / 4 / 8 ** 0.5  # one token inside the first ball
    out = codebook_output(near, output, keys, values, radii)
    changed = (out != output).any(-1)
    assert changed.sum() == 1 and changed[1, 3]
    assert torch.equal(out[1, 3], values[0]) or (keys[1:] - near[1, 3]).norm(dim=-1).min() < radius / 4


def _entry(i, key, radius, label, earlier=True):
    return Entry(str(i), torch.tensor(key, dtype=torch.float32), torch.zeros(3), radius, label, earlier)


def test_a_far_key_adds_an_entry_with_the_initial_radius():
    book = Codebook("m", [_entry(0, [0.0, 0.0], 1.0, (7,))])
    index = book.place(torch.tensor([5.0, 0.0]), (7,), torch.ones(3), eps_init=1.0)
    assert index == 1 and book.entries[1].radius == 1.0 and not book.entries[0].changed


def test_a_near_key_with_the_same_label_expands_the_nearest_radius():
    book = Codebook("m", [_entry(0, [0.0, 0.0], 1.0, (7,))])
    index = book.place(torch.tensor([1.5, 0.0]), (7,), torch.ones(3), eps_init=1.0)
    assert index == 0 and len(book.entries) == 1
    assert book.entries[0].radius == 1.5 and book.entries[0].changed and book.expanded == 1
    # inside the radius already: nothing moves
    book2 = Codebook("m", [_entry(0, [0.0, 0.0], 1.0, (7,))])
    assert book2.place(torch.tensor([0.5, 0.0]), (7,), torch.ones(3), 1.0) == 0
    assert book2.entries[0].radius == 1.0 and not book2.entries[0].changed


def test_a_near_key_with_another_label_splits_both_radii():
    book = Codebook("m", [_entry(0, [0.0, 0.0], 1.0, (7,))])
    index = book.place(torch.tensor([1.2, 0.0]), (8,), torch.ones(3), eps_init=1.0)
    assert index == 1 and book.split == 1
    assert abs(book.entries[0].radius - (0.6 - SPLIT_MARGIN)) < 1e-6 and abs(book.entries[1].radius - 0.6) < 1e-6
    keys, values, radii = book.tensors()
    # each key now falls in its own ball only
    for i in range(2):
        d = (keys - keys[i]).norm(dim=-1)
        assert [bool(x) for x in d <= radii] == [j == i for j in range(2)]
    patch = book.patch(2, 3)
    assert patch.adjusted_ids == ("0",) and len(patch.ids) == 1


def test_the_live_codebook_takes_the_latest_live_change_and_ignores_changes_to_dead_entries():
    k = torch.eye(4)[:2] * 3
    first = _patch(["a", "b"], k, torch.zeros(2, 3), [1.0, 1.0], [(1,), (2,)])
    moved = _patch([], torch.zeros(0, 4), torch.zeros(0, 3), [], [], adjusted=["a"], adjusted_radii=[2.5],
                   adjusted_values=torch.ones(1, 3))
    both = live_entries([first, moved])["m"]
    assert both.radii.tolist() == [2.5, 1.0] and torch.equal(both.values[0], torch.ones(3))
    assert live_entries([first])["m"].radii.tolist() == [1.0, 1.0]  # the later commit reverted
    assert len(live_entries([moved])["m"]) == 0  # its target not live: the change is ignored


def test_a_codebook_file_round_trips_and_any_flipped_bit_is_refused():
    import pytest

    from kedit_vc.patches import PatchError

    g = torch.Generator().manual_seed(0)
    patch = _patch(["a"], torch.randn(1, 4, generator=g), torch.randn(1, 3, generator=g), [0.5], [(3, 4)],
                   adjusted=["z"], adjusted_radii=[0.25], adjusted_values=torch.randn(1, 3, generator=g))
    data = patch.to_bytes()
    back = CodebookPatch.from_bytes(data, expected_hash=patch.content_hash())
    assert back.content_hash() == patch.content_hash() and back.labels == ((3, 4),)
    for position in (len(data) - 1, len(data) - 20, 30):
        bad = bytearray(data)
        bad[position] ^= 0x04
        with pytest.raises(PatchError):
            CodebookPatch.from_bytes(bytes(bad))


def test_an_edit_takes_leaves_the_weights_and_defers_on_other_prompts():
    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.models.prompting import encode_text
    from kedit_vc.patches.attach import side_patches
    from tiny_models import tiny_family_model, tiny_tokenizer

    model, tok = tiny_family_model("llama", seed=0, d_model=32, d_mlp=64, vocab=300, layers=3), tiny_tokenizer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    request = EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris",
                          (Probe("rewrite", "The Eiffel Tower is located in the city of", "Paris", "Rome"),))
    result = get_editor("grace").edit(model, tok, [request], build_hparams("grace", {"layer": 1, "steps": 60, "eps_init": 0.01}),
                                      EditContext(fingerprint="tiny", progress=False))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.delta.updates == {} and result.info["entries_added"] == 1
    other = torch.tensor([encode_text(tok, "Tokyo is the capital of Japan")])
    with torch.no_grad():
        plain = model(input_ids=other).logits
        side_patches(model).set(result.patches)
        assert torch.equal(model(input_ids=other).logits, plain)  # deferral: bit for bit
        prompt = encode_text(tok, "The Eiffel Tower is located in the city of")
        edited = model(input_ids=torch.tensor([prompt])).logits[0, -1].argmax()
        side_patches(model).clear()
    assert tok.decode([int(edited)]).strip() == "Rome"


def test_training_with_the_lower_blocks_replayed_gives_the_plain_forwards_value(monkeypatch):
    """GRACE trains its value with the blocks below the codebook replayed and the LM head at
    the target positions only: the trained value and step count equal those of plain whole-model
    forwards (replay switched off, the logits taken from the model's own output)."""
    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.grace import algorithm
    from kedit_vc.editors.registry import build_hparams
    from tiny_models import tiny_family_model, tiny_tokenizer

    request = EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris",
                          (Probe("rewrite", "The Eiffel Tower is located in the city of", "Paris", "Rome"),))
    hp = build_hparams("grace", {"layer": 2, "steps": 60, "eps_init": 0.01, "lr": 0.01})

    def trained() -> tuple[torch.Tensor, list[int]]:
        model = tiny_family_model("llama", seed=1, d_model=32, d_mlp=64, vocab=300, layers=4)
        result = get_editor("grace").edit(model, tiny_tokenizer(), [request], hp,
                                          EditContext(fingerprint="tiny", progress=False))
        (patch,) = result.patches
        return patch.values.clone(), result.info["steps"]

    replayed = trained()

    class NoReplay:
        def __enter__(self) -> "NoReplay":
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def arm(self) -> None:
            pass

    monkeypatch.setattr(algorithm, "LowerBlockReplay", lambda model, layer: NoReplay())
    monkeypatch.setattr(algorithm, "final_hidden", lambda model, ids: model(input_ids=ids).logits)
    monkeypatch.setattr(algorithm, "logits_from_hidden", lambda model, logits: logits)
    plain = trained()
    torch.testing.assert_close(replayed[0], plain[0], rtol=1e-5, atol=1e-6)
    assert replayed[1] == plain[1] and replayed[1][0] > 1   # steps taken (early stop), the same
    assert replayed[0].abs().max() > 0


def test_raw_context_keys_each_edit_on_its_prompt_with_and_without_the_prefix(monkeypatch):
    """With ``raw_context`` (the default) GRACE places and trains each request twice: on the
    prefixed prompt and on the bare one a user types; without it, once (the paper's one key)."""
    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.grace import algorithm
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.models.prompting import NO_PREFIX, encode_text
    from tiny_models import tiny_family_model, tiny_tokenizer

    tok = tiny_tokenizer()
    request = EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris",
                          (Probe("rewrite", "The Eiffel Tower is located in the city of", "Paris", "Rome"),))
    text = "The Eiffel Tower is located in the city of"
    prefixed, raw = encode_text(tok, text), encode_text(tok, NO_PREFIX + text)
    assert prefixed != raw   # the tiny tokenizer adds no BOS: the shared prefix is put before
    placed: list[list[int]] = []
    original = algorithm.GraceEditor._place_and_train

    def spy(self, model, module, book, prompt, target, hp):  # noqa: ANN001, ANN202
        placed.append(list(prompt))
        return original(self, model, module, book, prompt, target, hp)

    monkeypatch.setattr(algorithm.GraceEditor, "_place_and_train", spy)
    for flag, expected in ((True, [prefixed, raw]), (False, [prefixed])):
        placed.clear()
        model = tiny_family_model("llama", seed=0, d_model=32, d_mlp=64, vocab=300, layers=3)
        get_editor("grace").edit(model, tok, [request],
                                 build_hparams("grace", {"layer": 1, "steps": 5, "raw_context": flag}),
                                 EditContext(fingerprint="tiny", progress=False))
        assert placed == expected, flag

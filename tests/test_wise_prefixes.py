"""WISE's augmenting context prefixes (``prefixes``): the reference trains each edit on the bare
prompt and on model-written prefixes of it, so the memory activates and answers after text too.

Each training row is one template's edit sequence and the target positions read the target;
the margins hold for every row (the gap against every irrelevant input); the recorded
activation is the mean over the rows, as the reference's ``save_editing_activation``; the
prefixes depend on the main weights only (generated with every side patch off), so a fresh
process gets the same ones whatever the history attached.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from test_cli_store import EIFFEL
from test_patches import commit, load, tokenizer_of

TINY_WISE_PREFIXED = ("method wise { layer = 2 steps = 40 lr = 50.0 alpha = 0.05 beta = 0.5 gamma = 0.3 "
                      "prefixes = 4 }")


def _request(target: str = "Rome"):
    from kedit_vc.compiler.plan import EditRequest

    return EditRequest("e", "Eiffel Tower", "The {} is located in the city of", target, "Paris", ())


def test_each_row_is_one_templates_edit_sequence_and_the_target_positions_read_the_target(tiny_model_dir):
    from transformers import AutoTokenizer

    from kedit_vc.editors.wise.algorithm import edit_batch
    from kedit_vc.models.prompting import encode_continuation, encode_text

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    templates = ("{}", "Once upon a time. {}", "I. {}")
    request = _request("Rome of the Caesars")
    batch = edit_batch(tokenizer, request, templates)
    target = encode_continuation(tokenizer, " Rome of the Caesars")
    prompts = [encode_text(tokenizer, t.format("The Eiffel Tower is located in the city of")) for t in templates]
    assert batch.ids.shape[0] == 3 and batch.labels.tolist() == target * 3
    for row, prompt in enumerate(prompts):
        length = int(batch.mask[row].sum())
        assert batch.ids[row, :length].tolist() == prompt + target[:-1]
        assert batch.mask[row, length:].sum() == 0
    for row, col, label in zip(batch.rows.tolist(), batch.cols.tolist(), batch.labels.tolist()):
        length = int(batch.mask[row].sum())
        # the logits at col predict token col + 1: the label, which the row holds unless it is the last
        assert col + 1 == length or batch.ids[row, col + 1] == label
        assert col + 1 >= len(prompts[row])


quarters = st.integers(-200, 200).map(lambda n: n / 4)


@settings(max_examples=100, deadline=None)
@given(edits=st.lists(quarters, min_size=1, max_size=4), irrelevant=st.lists(quarters, min_size=1, max_size=4))
def test_with_several_rows_the_margins_hold_only_when_they_hold_for_every_row(edits, irrelevant):
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.editors.wise.algorithm import margin_loss, separated

    hp = build_hparams("wise", {"alpha": 5.0, "beta": 20.0, "gamma": 10.0})
    edit, irr = torch.tensor(edits), torch.tensor(irrelevant)
    each = [separated(torch.tensor(e), irr, hp) for e in edits]
    assert separated(edit, irr, hp) == all(each)
    assert (margin_loss(edit, irr, hp).item() == 0) == all(each)


def test_the_recorded_activation_is_the_mean_over_the_bare_and_prefixed_rows(store):
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.editors.wise.algorithm import edit_batch, edit_templates, row_activations
    from kedit_vc.patches.sidememory.live import live_memory

    result = commit(store, "a.kedit", EIFFEL, method=TINY_WISE_PREFIXED)
    (request,) = result.plan.requests
    (patch,) = [p for p in store.read_commit("HEAD").patches() if p.kind == "sidememory"]
    memory = live_memory([patch])[patch.module]
    model = load(store)
    hp = build_hparams("wise", {"layer": 2, "prefixes": 4})
    templates = edit_templates(model, tokenizer_of(model), hp)
    assert len(templates) == 5 and templates[0] == "{}" and len(set(templates)) == 5
    batch = edit_batch(tokenizer_of(model), request, templates)
    seen: dict[str, torch.Tensor] = {}
    handle = model.get_submodule(patch.module).register_forward_hook(
        lambda _m, a, _o: seen.__setitem__("a", a[0].detach().float()))
    try:
        with torch.no_grad():
            model(input_ids=batch.ids, attention_mask=batch.mask)
    finally:
        handle.remove()
    rows = row_activations(seen["a"], batch.mask.float(), memory.delta)
    assert float(patch.activations[0]) == pytest.approx(float(rows.mean()), rel=1e-4)
    info = store.read_commit("HEAD").manifest["extra"]["editor_info"][0]["edits"][0]
    assert info["activation"] == pytest.approx(float(rows.mean()), rel=1e-4)


def test_the_prefixes_do_not_depend_on_the_side_patches_attached(store, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.editors.wise.algorithm import edit_templates
    from kedit_vc.patches.attach import side_patches

    commit(store, "a.kedit", EIFFEL, method=TINY_WISE_PREFIXED)
    edited = load(store)
    attached = list(side_patches(edited).patches)
    assert attached
    hp = build_hparams("wise", {"layer": 2, "prefixes": 4})
    with_memory = edit_templates(edited, tokenizer_of(edited), hp)
    assert side_patches(edited).patches == attached                   # put back as they were
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert edit_templates(base, tokenizer_of(edited), hp) == with_memory


def test_prefixes_are_checked():
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.editors.wise.hparams import check

    assert any("prefixes" in p for p in check(build_hparams("wise", {"prefixes": -1})))

"""The edit memory (IKE, MemPrompt) on a tiny random Llama: commits and reverts drop exactly a
commit's facts, the wrapper's logits stay aligned with the caller's input (padded or not),
retrieval picks the matching fact and never a reverted one, a prompt no fact applies to is
untouched bit for bit (MemPrompt), a tampered memory file is caught, export refuses."""

from __future__ import annotations

import pytest
import torch
from conftest import run_kvc, write_spec
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli_store import EIFFEL, FRANCE, TOKYO

TINY_IKE = "method ike { k = 2 layer = 1 }"
TINY_MEMPROMPT = "method memprompt { layer = 1 threshold = 0.999 }"


def commit(store, name, body, method=TINY_IKE):
    from kedit_vc.ops import CommitOptions, commit_spec

    return commit_spec(store, write_spec(store.paths.root, name, body, method=method), CommitOptions())


def live_facts(store, rev="HEAD"):
    from kedit_vc.patches.memory.live import live_memory

    memory = live_memory([p for p in store.live_patches(rev) if p.kind == "memory"])
    return [] if memory is None else [(f.id, f.prompt, f.target_new) for f in memory.facts]


def encode(tokenizer, text):
    from kedit_vc.models.prompting import encode_text

    return encode_text(tokenizer, text)


def test_commit_and_revert_change_the_live_memory_by_exactly_one_commits_facts(store):
    from kedit_vc import load_edited
    from kedit_vc.ops import revert

    base, tok = load_edited(store.paths.root)
    ids = torch.tensor([encode(tok, "The capital of Germany is Berlin")])
    with torch.no_grad():
        plain = base(input_ids=ids).logits
    commit(store, "a.kedit", EIFFEL)
    one = live_facts(store)
    assert [f[1:] for f in one] == [("The Eiffel Tower is located in the city of", "Rome")]
    record = store.read_commit("HEAD")
    assert record.patch_kinds == ("memory",) and record.delta().updates == {}
    commit(store, "b.kedit", TOKYO)
    two = live_facts(store)
    assert two[:1] == one and len(two) == 2
    revert(store, "HEAD")
    assert live_facts(store) == one  # the reverted commit's fact, and only it, is gone
    assert store.fsck() == []
    revert(store, "HEAD~2")
    assert live_facts(store) == []
    model, _ = load_edited(store.paths.root)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, plain)  # nothing attached: the base, bit for bit
    revert(store, "HEAD")  # revert of the revert: the fact comes back
    assert live_facts(store) == one
    out = run_kvc("show", "HEAD~4")
    assert out.exit_code == 0 and "1 fact added to the edit memory (ike)" in out.output, out.output


def _context_of(wrapper, tokens):
    """The context the wrapper puts before the last position of ``tokens``."""
    hidden_ids = torch.tensor([tokens])
    return wrapper._rows(hidden_ids, None)[0][3][-1]


def test_logits_are_aligned_with_the_callers_input_padded_or_not(store):
    from kedit_vc import load_edited
    from kedit_vc.patches.attach import side_patches

    commit(store, "a.kedit", EIFFEL)
    commit(store, "b.kedit", FRANCE)
    model, tok = load_edited(store.paths.root)
    (wrapper,) = side_patches(model)._handles
    texts = ["The Eiffel Tower is located in the city of Rome", "The capital of France is"]
    rows = [encode(tok, t) for t in texts]
    with torch.no_grad():
        for tokens in rows:
            logits = model(input_ids=torch.tensor([tokens])).logits[0]               # [t, V]
            assert logits.shape[0] == len(tokens)
            context = _context_of(wrapper, tokens)
            assert context is not None
            lead = 1 if tokens[0] in wrapper.lead else 0
            full = torch.tensor([tokens[:lead] + list(context) + tokens[lead:]])
            side_patches(model).clear()
            manual = model(input_ids=full).logits[0]
            side_patches(model).set(store.live_patches("HEAD"))
            (wrapper,) = side_patches(model)._handles
            # the last position reads the context chosen from the whole input
            assert torch.allclose(logits[-1], manual[-1], atol=1e-5)
            assert torch.allclose(logits[:lead], manual[:lead], atol=1e-5)
        # a right-padded batch gives each row's own logits at its real positions
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
        batch = model(input_ids=ids, attention_mask=mask).logits
        for i, r in enumerate(rows):
            alone = model(input_ids=torch.tensor([r])).logits[0]
            assert torch.allclose(batch[i, :len(r)], alone, atol=1e-5)


def test_retrieval_picks_the_matching_fact_and_never_a_reverted_one(store):
    from kedit_vc import load_edited
    from kedit_vc.ops import revert
    from kedit_vc.patches.attach import side_patches
    from kedit_vc.patches.memory.embed import hidden_states

    commit(store, "a.kedit", EIFFEL)
    commit(store, "b.kedit", FRANCE)
    commit(store, "c.kedit", TOKYO)
    model, tok = load_edited(store.paths.root)
    (wrapper,) = side_patches(model)._handles
    facts = wrapper.memory.facts
    assert len(facts) == 3
    for fact in facts:
        hidden = hidden_states(model, wrapper.inner_forward, torch.tensor([list(fact.key_ids)]), None, 1)[0]
        assert facts[int(wrapper.retriever.scores(hidden)[-1].argmax())].id == fact.id  # its own prompt finds it
    france = encode(tok, "The capital of France is")
    madrid = next(f for f in facts if f.target_new == "Madrid")
    assert _ends_with(_context_of(wrapper, france), madrid.head_ids)  # IKE's new fact for this query
    revert(store, "HEAD~1")  # the France commit
    model, tok = load_edited(store.paths.root)
    (wrapper,) = side_patches(model)._handles
    assert [f.target_new for f in wrapper.memory.facts] == ["Rome", "China"]
    assert not _contains(_context_of(wrapper, france), madrid.head_ids)


def _ends_with(seq, tail) -> bool:
    return tuple(seq[-len(tail):]) == tuple(tail)


def _contains(seq, part) -> bool:
    seq, part = tuple(seq), tuple(part)
    return any(seq[i:i + len(part)] == part for i in range(len(seq) - len(part) + 1))


def test_memprompt_leaves_prompts_no_fact_applies_to_bit_for_bit_and_prepends_for_its_own(store):
    from kedit_vc import load_edited
    from kedit_vc.patches.attach import side_patches

    commit(store, "a.kedit", EIFFEL, method=TINY_MEMPROMPT)
    model, tok = load_edited(store.paths.root)
    other = torch.tensor([encode(tok, "Seoul is the capital of Korea")])
    own = torch.tensor([encode(tok, "The Eiffel Tower is located in the city of")])
    with torch.no_grad():
        edited_other, edited_own = model(input_ids=other).logits, model(input_ids=own).logits
        side_patches(model).clear()
        plain_other, plain_own = model(input_ids=other).logits, model(input_ids=own).logits
    assert torch.equal(edited_other, plain_other)
    assert not torch.allclose(edited_own[0, -1], plain_own[0, -1])
    assert torch.equal(edited_own[0, :2], plain_own[0, :2])  # before the subject: no fact applies yet


def test_memprompts_threshold_and_shots_default_to_those_chosen_for_the_architecture(store):
    """Cosines of Gemma 3's states sit far higher than SmolLM2's: one threshold for both let
    every Gemma neighbour retrieve a fact (bench/results/memprompt_threshold_gemma.json)."""
    from dataclasses import replace

    from kedit_vc.editors.memprompt import hparams as h
    from kedit_vc.models import load_model

    lm = load_model(store.model_ref, progress=False)
    plain = h.resolve(lm.model, h.MemPromptHparams())
    assert (plain.threshold, plain.shots) == (h.DEFAULT_THRESHOLD, h.DEFAULT_SHOTS)
    assert h.resolve(lm.model, h.MemPromptHparams(threshold=0.5)).threshold == 0.5
    own_type, lm.model.config.model_type = lm.model.config.model_type, "gemma3_text"
    try:
        gemma = h.resolve(lm.model, h.MemPromptHparams())
        assert gemma.threshold == h.THRESHOLDS["gemma3_text"] != h.DEFAULT_THRESHOLD
        assert gemma.shots == h.SHOTS["gemma3_text"] != h.DEFAULT_SHOTS
        chosen = h.resolve(lm.model, replace(h.MemPromptHparams(), threshold=0.7, shots=0))
        assert (chosen.threshold, chosen.shots) == (0.7, 0)
    finally:
        lm.model.config.model_type = own_type
    commit(store, "a.kedit", EIFFEL, method="method memprompt { layer = 1 }")
    settings = store.live_patches("HEAD")[0].settings                                  # what the commit used
    assert (settings["threshold"], settings["shots"]) == (h.DEFAULT_THRESHOLD, h.DEFAULT_SHOTS)


def test_memprompt_shots_put_the_next_best_facts_worked_examples_first_and_only_when_one_applies(store):
    from kedit_vc import load_edited
    from kedit_vc.patches.attach import side_patches

    shots = "method memprompt { layer = 1 threshold = 0.999 shots = 2 }"
    for name, body in (("a.kedit", EIFFEL), ("b.kedit", FRANCE), ("c.kedit", TOKYO)):
        commit(store, name, body, method=shots)
    model, tok = load_edited(store.paths.root)
    (wrapper,) = side_patches(model)._handles
    eiffel = next(f for f in wrapper.memory.facts if f.target_new == "Rome")
    others = [f for f in wrapper.memory.facts if f is not eiffel]
    context = _context_of(wrapper, encode(tok, "The Eiffel Tower is located in the city of"))
    copy = {f.id: next(d.ids for d in f.demos if d.kind == "copy") for f in wrapper.memory.facts}
    assert _ends_with(context, tuple(copy[eiffel.id]) + tuple(eiffel.head_ids))     # its own fact nearest
    assert all(_contains(context[:len(context) - len(eiffel.head_ids) - len(copy[eiffel.id])], copy[f.id])
               for f in others)                                                    # then both others' examples
    assert _context_of(wrapper, encode(tok, "Seoul is the capital of Korea")) is None  # none applies: nothing


def test_generate_returns_the_callers_ids_then_the_new_tokens(store):
    from kedit_vc import load_edited

    commit(store, "a.kedit", EIFFEL)
    model, tok = load_edited(store.paths.root)
    ids = torch.tensor([encode(tok, "The Eiffel Tower is located in the city of")])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False,
                         pad_token_id=0)
    assert torch.equal(out[0, :ids.shape[1]], ids[0]) and out.shape[1] == ids.shape[1] + 3


def test_a_tampered_memory_file_is_caught_by_fsck_and_refused(store):
    from kedit_vc.errors import KvcError
    from kedit_vc.store import gitio, open_store

    commit(store, "a.kedit", EIFFEL)
    record = store.read_commit("HEAD")
    entry = record.manifest["patches"][0]
    files = {n: gitio.blob_bytes(b) for n, b in gitio.read_files(store.repo, record.sha).items()}
    files[entry["file"]] = files[entry["file"]].replace(b"Rome", b"Rime")
    tree = gitio.write_tree(store.repo, files)
    bad = gitio.write_commit(store.repo, tree, [record.parent], record.message)
    gitio.set_ref(store.repo, gitio.branch_ref(store.repo), bad, record.sha, store.paths.tmp)
    with open_store(store.paths.root) as fresh:
        problems = fresh.fsck()
        assert any("altered or is corrupt" in p and entry["file"] in p for p in problems), problems
        with pytest.raises(KvcError, match="altered or is corrupt"):
            fresh.live_patches("HEAD")


def test_export_refuses_a_revision_with_a_live_memory(store):
    commit(store, "a.kedit", EIFFEL)
    out = run_kvc("export", "--format", "hf", "-o", "out")
    assert out.exit_code != 0 and "memory" in out.output and "load_edited" in out.output, out.output


def _patch(policy="memprompt"):
    from kedit_vc.patches.memory.core import Demo, MemoryFact, MemoryPatch

    fact = MemoryFact("e-1", "Eiffel Tower", "The {} is in", "The Eiffel Tower is in", "Rome", "Paris",
                      (5, 6, 7, 8), 2, "New Fact: The Eiffel Tower is in Rome\nPrompt:", (9, 10),
                      (Demo("copy", "New Fact: x\nPrompt: x\n\n", (11, 12)),))
    return MemoryPatch((fact,), {"policy": policy, "layer": 1}, lead_ids=(2,), vocab_size=300)


@settings(max_examples=60, deadline=None)
@given(position=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_a_memory_file_round_trips_and_a_flipped_bit_is_refused_or_harmless(position, bit):
    from kedit_vc.patches import PatchError
    from kedit_vc.patches.memory.core import MemoryPatch

    patch = _patch()
    data = patch.to_bytes()
    assert MemoryPatch.from_bytes(data, expected_hash=patch.content_hash()).content_hash() == patch.content_hash()
    bad = bytearray(data)
    bad[position % len(data)] ^= 1 << bit
    try:
        back = MemoryPatch.from_bytes(bytes(bad), expected_hash=patch.content_hash())
    except PatchError:
        return
    assert back.info() == patch.info()  # only header padding changed: the content is the same


def test_a_memory_mixing_methods_or_another_vocabulary_is_refused():
    from tiny_models import tiny_family_model

    from kedit_vc.patches import PatchError
    from kedit_vc.patches.attach import side_patches
    from kedit_vc.patches.memory.live import live_memory

    with pytest.raises(PatchError, match="one in-context method"):
        live_memory([_patch("ike"), _patch("memprompt")])
    model = tiny_family_model("llama", seed=0, d_model=32, d_mlp=64, vocab=200, layers=3)
    with pytest.raises(PatchError, match="another model"):
        side_patches(model).set([_patch()])


def test_a_weight_edit_after_memory_commits_is_the_same_as_without_them(project, tiny_model_dir, tmp_path):
    """The memory is detached while an editor runs: ROME's hooks see the caller's positions."""
    from conftest import TINY_ROME

    from kedit_vc.ops import init

    with init(project, str(tiny_model_dir)) as with_memory:
        commit(with_memory, "a.kedit", EIFFEL)
        commit(with_memory, "b.kedit", FRANCE, method=TINY_ROME)
        after_memory = with_memory.read_commit("HEAD").delta().content_hash()
    with init(tmp_path / "plain", str(tiny_model_dir)) as plain:
        commit(plain, "b.kedit", FRANCE, method=TINY_ROME)
        alone = plain.read_commit("HEAD").delta().content_hash()
    assert after_memory == alone

"""Patch kinds on a tiny random Llama: GRACE codebooks as commits beside weight deltas.

Every kind round-trips through commit, checkout, revert (bit-exact logits against the base)
and fsck; a corrupted codebook is refused; ``load_edited`` on a mixed history equals the live
patches applied one by one; the codebook's deferral, expansion and splitting.
"""

from __future__ import annotations

import pytest
import torch
from conftest import run_kvc, write_spec
from test_cli_store import EIFFEL, FRANCE, TOKYO

TINY_GRACE = "method grace { layer = 2 eps_init = 1.0 steps = 40 lr = 1.0 }"


def commit(store, name, body, method=TINY_GRACE):
    from kedit_vc.ops import CommitOptions, commit_spec

    return commit_spec(store, write_spec(store.paths.root, name, body, method=method), CommitOptions())


def logits(model, text="The Eiffel Tower is located in the city of Paris"):
    from kedit_vc.models.prompting import encode_text

    ids = torch.tensor([encode_text(tokenizer_of(model), text)])
    with torch.no_grad():
        return model(input_ids=ids).logits


_TOKENIZER: list[object] = []  # every model here is the tiny Llama: one tokenizer


def tokenizer_of(_model):
    return _TOKENIZER[0]


def load(store, rev="HEAD"):
    from kedit_vc import load_edited

    model, tokenizer = load_edited(store.paths.root, rev)
    _TOKENIZER[:] = [tokenizer]
    return model


def rewrite_argmax_holds(model, request) -> bool:
    from kedit_vc.models.prompting import encode_continuation, encode_text

    tok = tokenizer_of(model)
    prompt = encode_text(tok, request.prompt.replace("{}", request.subject))
    target = encode_continuation(tok, " " + request.target_new)
    ids = torch.tensor([prompt + target[:-1]])
    with torch.no_grad():
        out = model(input_ids=ids).logits[0, len(prompt) - 1:]
    return out.argmax(-1).tolist() == target


def test_a_grace_commit_is_a_codebook_patch_that_takes_and_reverts_exactly(store):
    base = load(store)
    result = commit(store, "a.kedit", EIFFEL)
    record = store.read_commit("HEAD")
    assert record.patch_kinds == ("codebook",)
    assert record.delta().updates == {}  # weights untouched
    (patch,) = record.patches()
    assert patch.module == "model.layers.2.mlp.down_proj" and len(patch.ids) == 1
    assert float(patch.radii[0]) == 1.0
    edited = load(store)
    assert rewrite_argmax_holds(edited, result.plan.requests[0])
    assert not torch.equal(logits(edited), logits(base))
    assert store.fsck() == []
    from kedit_vc.ops import revert

    revert(store, "HEAD")
    assert torch.equal(logits(load(store)), logits(base))  # bit-exact: the codebook is not live
    assert torch.equal(logits(load(store, "HEAD~1")), logits(edited))  # checkout of the edit
    assert store.live_patches("HEAD") == [] and store.fsck() == []
    revert(store, "HEAD")  # revert of the revert brings the codebook back
    assert torch.equal(logits(load(store)), logits(edited))
    with pytest.raises(Exception, match="already reverted"):
        revert(store, "HEAD~2")
    assert store.fsck() == []


def test_every_patch_kind_round_trips_and_weights_revert_bit_exactly(store):
    from conftest import TINY_ROME

    from kedit_vc.ops import revert

    base = load(store)
    commit(store, "rome.kedit", FRANCE, method=TINY_ROME)
    rome = load(store)
    assert not torch.equal(logits(rome), logits(base))
    commit(store, "grace.kedit", EIFFEL)
    revert(store, "HEAD")  # the GRACE commit
    assert torch.equal(logits(load(store)), logits(rome))
    revert(store, "HEAD~2")  # the ROME commit
    assert torch.equal(logits(load(store)), logits(base))
    assert store.fsck() == []


def test_a_corrupted_codebook_is_detected_by_fsck_and_refused(store):
    commit(store, "a.kedit", EIFFEL)
    record = store.read_commit("HEAD")
    entry = record.manifest["patches"][0]
    # Rewrite the commit with one flipped byte in its codebook file (tensor data, end of file).
    from kedit_vc.store import gitio

    files = {n: gitio.blob_bytes(b) for n, b in gitio.read_files(store.repo, record.sha).items()}
    data = bytearray(files[entry["file"]])
    data[-3] ^= 0x01
    files[entry["file"]] = bytes(data)
    tree = gitio.write_tree(store.repo, files)
    bad = gitio.write_commit(store.repo, tree, [record.parent], record.message)
    gitio.set_ref(store.repo, gitio.branch_ref(store.repo), bad, record.sha, store.paths.tmp)
    from kedit_vc.store import open_store

    with open_store(store.paths.root) as fresh:
        problems = fresh.fsck()
        assert any("altered or is corrupt" in p and entry["file"] in p for p in problems), problems
        from kedit_vc.errors import KvcError

        with pytest.raises(KvcError, match="altered or is corrupt"):
            fresh.live_patches("HEAD")
    out = run_kvc("fsck")
    assert out.exit_code != 0 and "corrupt" in out.output


def test_a_codebook_for_another_model_is_refused_on_load():
    from tiny_models import tiny_family_model

    from kedit_vc.patches import PatchError
    from kedit_vc.patches.attach import side_patches
    from kedit_vc.patches.codebook.core import CodebookPatch

    model = tiny_family_model("llama", seed=0, d_model=32, d_mlp=64, vocab=300, layers=3)
    wrong = CodebookPatch("model.layers.1.mlp.down_proj", 128, 64, ("a",), torch.zeros(1, 128), torch.zeros(1, 64),
                          torch.ones(1), ((5,),))
    with pytest.raises(PatchError, match="another model"):
        side_patches(model).set([wrong])
    missing = CodebookPatch("model.layers.9.mlp.down_proj", 64, 32, ("a",), torch.zeros(1, 64), torch.zeros(1, 32),
                            torch.ones(1), ((5,),))
    with pytest.raises(PatchError, match="no module"):
        side_patches(model).set([missing])
    assert side_patches(model).patches == []


def test_load_edited_on_a_mixed_history_equals_the_live_patches_applied_one_by_one(store, tiny_model_dir):
    from conftest import TINY_ROME

    from kedit_vc.models import load_model
    from kedit_vc.ops import revert
    from kedit_vc.patches.codebook.live import attach

    commit(store, "rome.kedit", FRANCE, method=TINY_ROME)
    commit(store, "g1.kedit", EIFFEL)
    commit(store, "g2.kedit", TOKYO)
    revert(store, "HEAD~1")  # the first GRACE commit
    chain = store.chain("HEAD")
    rome_sha, g1, g2 = chain[1], chain[2], chain[3]
    assert store.live_commits("HEAD") == [rome_sha, g2]

    by_hand = load_model(str(tiny_model_dir)).model
    store.read_commit(rome_sha).delta().apply(by_hand)
    attach(by_hand, store.read_commit(g2).patches())
    model = load(store)
    for text in ("The Eiffel Tower is located in the city of", "Tokyo is the capital of",
                 "The capital of France is"):
        assert torch.allclose(logits(model, text), logits(by_hand, text), atol=1e-5, rtol=0)
    info = run_kvc("show", g2[:10])
    assert info.exit_code == 0 and "codebook at model.layers.2.mlp.down_proj: +1 entry" in info.output
    d = run_kvc("diff", g1[:10], "HEAD")
    assert d.exit_code == 0 and f"- {g1[:10]} codebook" in d.output and "+1 entry" in d.output
    out = run_kvc("export", "--format", "hf", "-o", "out")
    assert out.exit_code != 0 and "load_edited" in out.output


def test_generate_works_with_a_live_codebook(store):
    from kedit_vc.cli.model_commands import greedy_completion

    commit(store, "a.kedit", EIFFEL)
    model = load(store)
    text = greedy_completion(model, tokenizer_of(model), "The Eiffel Tower is located in the city of", 2)
    assert text.split()[0] == "Rome"
    out = run_kvc("model", "generate", ".", "The Eiffel Tower is located in the city of", "--rev", "HEAD",
                  "--max-new-tokens", "1")
    assert out.exit_code == 0 and out.output.strip().endswith("Rome"), out.output
    assert run_kvc("log").exit_code == 0
    # kvc check evaluates HEAD through the same path: the codebook is attached, the edit holds.
    from kedit_vc.ops import Evaluator

    check = run_kvc("check", "--min-reliability", "1.0")
    assert check.exit_code == 0, check.output
    assert Evaluator(store, generative=False).evaluate("HEAD").report.metrics["reliability"] == 1.0


def test_squash_keeps_codebook_patches_as_they_are(store):
    from conftest import TINY_ROME

    from kedit_vc.ops import squash

    commit(store, "rome.kedit", FRANCE, method=TINY_ROME)
    commit(store, "grace.kedit", EIFFEL)
    kept = store.read_commit("HEAD").patches()[0].content_hash()
    result = squash(store, "HEAD~2..HEAD", hparams={"layers": [1, 2], "v_steps": 3, "stats_tokens": 2000,
                                                    "context_templates": 2, "context_length": 4},
                    allow_loss=True)
    record = store.read_commit(result.sha)
    assert [p.content_hash() for p in record.patches()] == [kept]
    assert "kept as they are" in record.message
    assert len(record.edit_ids) == 2 and record.manifest["extra"]["kept_patches"]["commits"]
    assert store.fsck() == []


def test_merge_and_cherry_pick_refuse_edits_held_by_codebooks_and_change_nothing(store):
    """A re-solve cannot carry a codebook: merging (diverged, so not a fast-forward) or
    picking a GRACE commit is refused with what to do, and the store is left as it was
    (the edit is never silently lost)."""
    import pytest as _pytest
    from conftest import TINY_ROME

    from kedit_vc.errors import UsageError
    from kedit_vc.ops import branches
    from kedit_vc.ops.merge import cherry_pick, merge

    branches.create_branch(store, "memory")
    branches.switch(store, "memory")
    commit(store, "grace.kedit", EIFFEL)
    grace_commit = store.head()
    branches.switch(store, "main")
    commit(store, "rome.kedit", FRANCE, method=TINY_ROME)
    start = store.head()
    for attempt in (lambda: merge(store, "memory"), lambda: cherry_pick(store, grace_commit)):
        with _pytest.raises(UsageError, match="codebook patches"):
            attempt()
        assert store.head() == start and store.fsck() == []

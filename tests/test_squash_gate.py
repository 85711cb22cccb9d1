"""A squash keeps what it squashes: the per-edit checks, refusal that leaves the store as
it was, --allow-loss recording what weakened, and --dry-run writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_kvc, write_spec
from kedit_vc.compiler.plan import EditRequest
from kedit_vc.eval.scores import EditScores, ProbeScore, ProbeScores
from kedit_vc.eval.report import summarize
from kedit_vc.ops.squash import KEPT, Loss, find_losses

EIFFEL = 'edit "Eiffel Tower" prompt "The {subject} is located in the city of": "Paris" -> "Rome"'
TOKYO = 'edit "Tokyo" prompt "{subject} is the capital of": "Japan" -> "China"'


def probe(kind: str, correct: bool, generated: str | None = None, target: str = "Rome") -> ProbeScore:
    return ProbeScore(kind, "p", target, 1.0, 1.0 if correct else 0.0, (5,), (5,) if correct else (6,),
                      generated=generated)


def test_checks_and_losses_per_edit():
    held = EditScores("e-1", (probe("rewrite", True, " Rome, Italy"), probe("paraphrase", True),
                              probe("neighbour", False)))
    (row,) = summarize(ProbeScores((held,))).rows
    assert {name: row.metrics[name] for name in KEPT} == {"reliability": 1.0, "gen_reliability": 1.0,
                                                         "generalization": 1.0}
    weak = EditScores("e-1", (probe("rewrite", True, " Paris"), probe("paraphrase", False), probe("neighbour", True)))
    never = EditScores("e-2", (probe("rewrite", False, " Paris"),))
    requests = [EditRequest("e-1", "Eiffel Tower", "{} is in", "Rome", "Paris"),
                EditRequest("e-2", "Tokyo", "{} is in", "China", "Japan")]
    before, after = summarize(ProbeScores((held, never))), summarize(ProbeScores((weak, never)))
    losses = find_losses(requests, before, after)
    # What never held (e-2) is no loss; e-1 keeps its teacher-forced rewrite but loses the rest.
    assert [(x.edit_id, x.check) for x in losses] == [("e-1", "gen_reliability"), ("e-1", "generalization")]
    assert find_losses(requests, before, before) == []


def _store_state(root: Path) -> dict[str, bytes]:
    """Every file of the store but the score cache (content-addressed scores of a commit's
    probes: measuring adds entries there, which change no history, ref or weights)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / ".kvc").rglob("*"))
            if p.is_file() and "cache/scores" not in p.as_posix()}


@pytest.fixture()
def squashable(project, tiny_model_dir):
    assert run_kvc("init", "--model", str(tiny_model_dir)).exit_code == 0
    for name, body in (("a.kedit", EIFFEL), ("b.kedit", TOKYO)):
        assert run_kvc("commit", str(write_spec(project, name, body)), "--no-progress").exit_code == 0
    return project


SQUASH = ("squash", "HEAD~2..HEAD", "--hparam", "layers=[1,2]", "--hparam", "v_steps=3", "--hparam",
          "stats_tokens=2000", "--hparam", "context_templates=2", "--no-progress")


def test_a_squash_that_would_lose_an_edit_is_refused_and_writes_nothing(squashable, monkeypatch):
    import importlib

    squash_op = importlib.import_module("kedit_vc.ops.squash")  # the module (kedit_vc.ops.squash is the function)

    # The re-solve is real; what it would lose is decided by the gate's detector, made to
    # report one loss (the detector itself is tested above).
    monkeypatch.setattr(squash_op, "find_losses",
                        lambda requests, before, after: [Loss(requests[0].edit_id, requests[0].subject,
                                                              requests[0].target_new, "reliability")])
    before = _store_state(squashable)
    refused = run_kvc(*SQUASH)
    assert refused.exit_code == 1, refused.output
    assert "would weaken 1 edit(s)" in refused.stderr and "Eiffel Tower" in refused.stdout
    assert _store_state(squashable) == before

    dry = run_kvc(*SQUASH, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.stdout)
    assert report["committed"] is None and report["dry_run"] and len(report["losses"]) == 1
    assert _store_state(squashable) == before

    accepted = run_kvc(*SQUASH, "--allow-loss")
    assert accepted.exit_code == 0, accepted.output
    shown = run_kvc("show", "HEAD")
    assert "weakened by this squash" in shown.stdout and "reliability" in shown.stdout
    from kedit_vc.store import open_store

    with open_store(squashable) as store:
        manifest = store.manifest("HEAD")
        assert manifest["op"] == "squash"
        assert [w["check"] for w in manifest["extra"]["weakened"]] == ["reliability"]
        assert store.fsck() == []


def test_a_squash_without_losses_commits_and_records_none(squashable):
    result = run_kvc(*SQUASH, "--json")
    report = json.loads(result.stdout)
    # On the tiny model nothing held before (three optimisation steps), so nothing can be lost.
    assert result.exit_code == 0 and report["committed"] and report["losses"] == []


def test_compose_squashes_the_range_exactly(squashable):
    import torch

    from kedit_vc.store import open_store

    with open_store(squashable) as store:
        tip = store.head()
        old = store.live_sum(tip)
    result = run_kvc("squash", "HEAD~2..HEAD", "--method", "compose", "--no-progress", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["method"] == "compose" and report["committed"] and report["losses"] == []
    # The model after the squash is the model at the old tip, so every score is unchanged.
    assert report["after"]["rows"] == report["before"]["rows"]
    with open_store(squashable) as store:
        new = store.live_sum("HEAD")
        assert set(new.updates) == set(old.updates)
        for name in old.updates:
            assert torch.allclose(new.dense(name), old.dense(name), atol=1e-6)
        manifest = store.manifest("HEAD")
        assert manifest["method"] == "compose" and manifest["hparams"] == {}
        # The plan says how the delta was made: the range's own calls, its edits still live.
        calls = manifest_plan_calls(store)
        assert [c.method for c in calls] == ["rome", "rome"]
        assert [r.subject for c in calls for r in c.requests] == ["Eiffel Tower", "Tokyo"]
        assert sum(u.rank for u in new.updates.values()) == sum(u.rank for u in old.updates.values())
        assert store.fsck() == []


def manifest_plan_calls(store):
    from kedit_vc.compiler.plan import Plan

    return Plan.from_json(store.read_commit("HEAD").plan).calls


def test_auto_keeps_the_composed_deltas_when_the_resolve_would_lose_an_edit(squashable, monkeypatch):
    import importlib

    squash_op = importlib.import_module("kedit_vc.ops.squash")
    real, calls = squash_op.find_losses, []

    def first_attempt_loses(requests, before, after):  # the re-solve loses e-1; compose is judged for real
        calls.append(len(calls))
        if len(calls) == 1:
            return [Loss(requests[0].edit_id, requests[0].subject, requests[0].target_new, "reliability")]
        return real(requests, before, after)

    monkeypatch.setattr(squash_op, "find_losses", first_attempt_loses)
    result = run_kvc("squash", "HEAD~2..HEAD", "--method", "auto", *SQUASH[2:], "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["method"] == "compose" and report["losses"] == [] and report["committed"]
    assert [(a["method"], a["edits_weakened"]) for a in report["attempts"]] == [("memit", 1), ("compose", 0)]
    from kedit_vc.store import open_store

    with open_store(squashable) as store:
        assert [a["method"] for a in store.manifest("HEAD")["extra"]["attempts"]] == ["memit", "compose"]


def test_the_default_squash_re_solves_rome_edits_jointly_and_stores_them_compacted(squashable):
    import torch

    from kedit_vc.delta import materialize
    from kedit_vc.models import load_model
    from kedit_vc.ops.weights import Weights
    from kedit_vc.store import open_store

    with open_store(squashable) as store:
        parts = sum(store.read_commit(sha).delta().summary().stored_bytes for sha in store.chain()[1:])
    result = run_kvc("squash", "HEAD~2..HEAD", "--no-progress", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # Nothing held on the tiny model (three target steps), so the re-solve and its compaction both pass.
    assert report["method"] == "joint_rome" and report["form"] == "float16" and report["committed"]
    assert [(a["method"], a["form"], a["edits_weakened"]) for a in report["attempts"]] == [
        ("joint_rome", "float32", 0), ("joint_rome", "float16", 0)]
    with open_store(squashable) as store:
        manifest = store.manifest("HEAD")
        assert manifest["method"] == "joint_rome" and manifest["extra"]["stored_as"] == "float16"
        # The range's ROME hyperparameters carry over (conftest's TINY_ROME).
        assert manifest["hparams"]["layer"] == 1 and manifest["hparams"]["v_steps"] == 3
        (update,) = store.read_commit("HEAD").delta().updates.values()
        assert update.rank == 2 and update.dtype == torch.float16
        assert store.read_commit("HEAD").delta().summary().stored_bytes * 2 == parts
        squash_delta, ref = store.read_commit("HEAD").delta(), store.model_ref
        squashed_sum = materialize([store.live_sum("HEAD")])
    # The store's weights are the gate's: float16 factors multiplied in float32.
    (name,) = squash_delta.updates
    expected = update.left.float() @ update.right.float().T
    assert torch.equal(squashed_sum[name], expected)
    # Reverting the squash commit gives the base weights back exactly.
    assert run_kvc("revert", "HEAD", "--no-progress").exit_code == 0
    loaded = load_model(ref)
    base = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    weights = Weights(loaded.model)
    with open_store(squashable) as store:
        assert store.live_sum("HEAD").updates == {} and store.fsck() == []
        weights.set_revision(store, "HEAD~1")
        assert torch.equal(loaded.model.state_dict()[name], base[name] + expected)
        weights.set_revision(store, "HEAD")
    assert all(torch.equal(base[k], v) for k, v in loaded.model.state_dict().items())


def test_compaction_that_would_lose_an_edit_is_not_kept(squashable, monkeypatch):
    import importlib

    import torch

    squash_op = importlib.import_module("kedit_vc.ops.squash")
    real, calls = squash_op.find_losses, []

    def compacted_loses(requests, before, after):  # the second judgement is the float16 one
        calls.append(len(calls))
        if len(calls) == 2:
            return [Loss(requests[0].edit_id, requests[0].subject, requests[0].target_new, "raw_reliability")]
        return real(requests, before, after)

    monkeypatch.setattr(squash_op, "find_losses", compacted_loses)
    result = run_kvc("squash", "HEAD~2..HEAD", "--no-progress", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["method"] == "joint_rome" and report["form"] == "float32" and report["losses"] == []
    assert [(a["method"], a["form"], a["edits_weakened"], a.get("targets")) for a in report["attempts"]] == [
        ("joint_rome", "float32", 0, "tip"), ("joint_rome", "float16", 1, "tip")]
    from kedit_vc.store import open_store

    with open_store(squashable) as store:
        (update,) = store.read_commit("HEAD").delta().updates.values()
        assert update.dtype == torch.float32 and store.manifest("HEAD")["extra"]["stored_as"] == "float32"
        assert store.manifest("HEAD")["extra"]["targets"] == "tip"


def test_the_default_joint_solve_is_made_from_the_parts_keys_and_gives_the_tips_weights(squashable):
    import torch

    from kedit_vc.ops.squash import compose_range
    from kedit_vc.ops.squash_parts import key_errors, parts_delta, range_parts
    from kedit_vc.store import open_store

    with open_store(squashable) as store:
        chain = store.chain()
        parts = range_parts(store, chain[1:], chain[-1])
        assert parts is not None and len(parts) == 2 and parts[0].keys.shape[0] == 1
        composed, _ = compose_range(store, chain[1:], chain[-1])
        old = store.live_sum("HEAD")
        # The parts' own targets drop the later part's cross-talk on the first key; the tip's do not.
        assert max(key_errors(composed, parts_delta(parts, "parts"), parts)) > 1e-4
        assert max(key_errors(composed, parts_delta(parts, "tip"), parts)) < 1e-5
    result = run_kvc("squash", "HEAD~2..HEAD", "--method", "auto", "--no-progress", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["attempts"][0]["targets"] == "tip"
    assert run_kvc("squash", "HEAD~2..HEAD", "--no-progress").exit_code == 0
    with open_store(squashable) as store:
        (name, update), = store.read_commit("HEAD").delta().updates.items()
        # float16 factors (compacted): the tip's weights up to their rounding.
        torch.testing.assert_close(update.dense(), old.dense(name), rtol=0,
                                   atol=2e-3 * float(old.dense(name).abs().max()))
        manifest = store.manifest("HEAD")
        assert manifest["extra"]["targets"] == "tip" and manifest["extra"]["stored_as"] == "float16"
        # Its plan says how the targets were made: the range's own ROME calls.
        assert [c.method for c in manifest_plan_calls(store)] == ["rome", "rome"]


def test_the_default_squash_composes_and_says_so_when_the_joint_solve_would_lose_an_edit(squashable,
                                                                                        monkeypatch):
    import importlib

    squash_op = importlib.import_module("kedit_vc.ops.squash")
    real, calls = squash_op.find_losses, []

    def first_attempt_loses(requests, before, after):
        calls.append(len(calls))
        if len(calls) == 1:
            return [Loss(requests[0].edit_id, requests[0].subject, requests[0].target_new, "gen_reliability")]
        return real(requests, before, after)

    monkeypatch.setattr(squash_op, "find_losses", first_attempt_loses)
    result = run_kvc("squash", "HEAD~2..HEAD", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "tried joint_rome (float32): 1 edit(s) weakened" in result.stdout
    assert "composed instead" in result.stdout and "with compose (exact)" in result.stdout
    shown = run_kvc("show", "HEAD")
    assert "the joint_rome re-solve would weaken 1 edit(s)" in shown.stdout


def test_auto_picks_joint_rome_only_for_rome_edits_of_one_setting():
    from kedit_vc.compiler.plan import EditorCall
    from kedit_vc.ops.squash import best_resolver

    rome, other = EditorCall("rome", {"v_steps": 3}), EditorCall("rome", {"layer": 2})
    assert best_resolver((rome, rome), {}) == ("joint_rome", {"v_steps": 3})
    assert best_resolver((rome,), {"v_steps": 9}) == ("joint_rome", {"v_steps": 9})
    assert best_resolver((rome, other), {}) == ("memit", {})
    assert best_resolver((rome, EditorCall("memit", {})), {}) == ("memit", {})
    assert best_resolver((rome,), {"layers": [1, 2]}) == ("memit", {"layers": [1, 2]})


def test_compaction_halves_the_bytes_and_keeps_the_product():
    import torch
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from kedit_vc.delta import Delta
    from kedit_vc.delta.updates import LowRank
    from kedit_vc.ops.squash import compact

    @settings(max_examples=25, deadline=None)
    @given(rank=st.integers(1, 6), seed=st.integers(0, 10_000), exponent=st.integers(-6, 6))
    def check(rank: int, seed: int, exponent: int) -> None:
        g = torch.Generator().manual_seed(seed)
        # Unbalanced factors (one tiny, one huge) must not under- or overflow in 16 bits.
        update = LowRank(torch.randn(12, rank, generator=g) * 10.0 ** exponent,
                         torch.randn(20, rank, generator=g) * 10.0 ** -exponent)
        small = compact(Delta({"w": update}))
        assert small is not None
        (half,) = small.updates.values()
        assert half.dtype in (torch.float16, torch.bfloat16) and half.dense().dtype == torch.float32
        assert small.summary().stored_bytes * 2 == Delta({"w": update}).summary().stored_bytes
        torch.testing.assert_close(half.dense(), update.dense(), atol=2e-3 * update.dense().abs().max().item(),
                                   rtol=0)
        assert compact(small) is None  # nothing left in float32

    check()


def test_compose_takes_no_hparams(squashable):
    result = run_kvc("squash", "HEAD~2..HEAD", "--method", "compose", "--hparam", "v_steps=3")
    assert result.exit_code != 0 and "runs no editor" in result.stderr


def test_a_composed_patch_is_stored_dense_once_that_is_smaller():
    import torch

    from kedit_vc.delta import Delta
    from kedit_vc.delta.updates import Dense, LowRank
    from kedit_vc.ops.squash import smallest_form

    g = torch.Generator().manual_seed(0)
    thin = LowRank(torch.randn(6, 2, generator=g), torch.randn(4, 2, generator=g))   # 20 numbers < 24
    wide = LowRank(torch.randn(6, 3, generator=g), torch.randn(4, 3, generator=g))   # 30 numbers > 24
    out = smallest_form(Delta({"a": thin, "b": wide}))
    assert isinstance(out.updates["a"], LowRank) and isinstance(out.updates["b"], Dense)
    assert torch.allclose(out.dense("b"), wide.dense()) and out.summary().stored_bytes <= 24 * 4 + 20 * 4


def test_raw_prompt_checks_are_kept_too():
    from dataclasses import replace

    def scored(correct_raw: bool) -> EditScores:
        prefixed = probe("rewrite", True, " Rome")
        return EditScores("e-1", (replace(prefixed, raw=probe("rewrite", correct_raw, " Rome")),))

    requests = [EditRequest("e-1", "Eiffel Tower", "{} is in", "Rome", "Paris")]
    before, after = summarize(ProbeScores((scored(True),))), summarize(ProbeScores((scored(False),)))
    assert before.rows[0].metrics["raw_reliability"] == 1.0 and after.rows[0].metrics["reliability"] == 1.0
    assert [x.check for x in find_losses(requests, before, after)] == ["raw_reliability"]

"""Branches, tags, merge (with conflicts, --continue, --abort), fast-forward and cherry-pick
on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_kvc, write_spec
from kedit_vc.errors import UsageError
from kedit_vc.ops.history import live_edits
from kedit_vc.store import open_store
from kedit_vc.store.refs import ref_name_problem

FACTS = [
    ('edit "Eiffel Tower" prompt "The {subject} is located in the city of": "Paris" -> "Rome"'),
    ('edit "Tokyo" prompt "{subject} is the capital of": "Japan" -> "China"'),
    ('edit "Danielle Darrieux" prompt "The mother tongue of {subject} is": "French" -> "English"'),
    ('edit "Toko Yasuda" prompt "{subject} plays the": "guitar" -> "piano"'),
]
EIFFEL_OSLO = 'edit "Eiffel Tower" prompt "The {subject} is located in the city of": "Paris" -> "Oslo"'
QUIET = "--no-progress"


def _commit(project: Path, name: str, body: str) -> None:
    result = run_kvc("commit", str(write_spec(project, name, body)), QUIET)
    assert result.exit_code == 0, result.output


def _state(root: Path) -> dict[str, bytes]:
    """Every file of the project and its store but the score cache (measuring adds to it)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "cache/scores" not in p.as_posix()}


def _live(project: Path, rev: str = "HEAD") -> dict[str, str]:
    with open_store(project) as store:
        return {e.request.edit_id: e.request.target_new for e in live_edits(store, store.resolve(rev))}


@pytest.fixture()
def store_dir(project, tiny_model_dir):
    assert run_kvc("init", "--model", str(tiny_model_dir)).exit_code == 0
    return project


def test_ref_names_follow_git_rules():
    for bad in ("", "-x", "a..b", "a b", "a~1", "x^", "a:b", "a?", "a*", "a[", "a\\b", "/a", "a/", "a//b",
                "a.", ".a", "a/.b", "a.lock", "a/b.lock", "a@{1}", "HEAD", "@", "a\x01"):
        assert ref_name_problem(bad) is not None, bad
    for good in ("main", "feature/capitals", "v1.0", "fix-42", "a@b", "a.b/c"):
        assert ref_name_problem(good) is None, good


def test_branch_switch_tag_round_trip(store_dir):
    _commit(store_dir, "a.kedit", FACTS[0])
    created = run_kvc("branch", "capitals")
    assert created.exit_code == 0, created.output
    listed = run_kvc("branch")
    assert "* main" in listed.stdout and "  capitals" in listed.stdout

    bad = run_kvc("branch", "bad..name")
    assert bad.exit_code == 2 and "branch NAME" in bad.stderr and "'..'" in bad.stderr
    assert "already exists" in run_kvc("branch", "capitals").stderr

    assert run_kvc("switch", "capitals").exit_code == 0
    assert "(branch capitals)" in run_kvc("status").stdout
    _commit(store_dir, "b.kedit", FACTS[1])
    with open_store(store_dir) as store:
        feature_head = store.head()
        assert store.head_cache.for_commit(feature_head) is not None
    assert run_kvc("switch", "main").exit_code == 0
    with open_store(store_dir) as store:
        # HEAD's cache is main's; capitals' was parked, and comes back on the next switch.
        assert store.head_cache.for_commit(store.head()) is not None
        assert (store.paths.head_cache.parent / "parked" / f"{feature_head}.safetensors").exists()
    assert set(_live(store_dir)) < set(_live(store_dir, "capitals"))
    assert run_kvc("switch", "capitals").exit_code == 0
    with open_store(store_dir) as store:
        assert store.head() == feature_head and store.head_cache.for_commit(feature_head) is not None
        assert store.fsck() == []

    assert run_kvc("tag", "reviewed").exit_code == 0
    assert run_kvc("tag", "first", "HEAD~1").exit_code == 0
    tags = json.loads(run_kvc("tag", "--json").stdout)
    with open_store(store_dir) as store:
        assert tags == {"first": store.resolve("HEAD~1"), "reviewed": store.head()}
        assert store.resolve("reviewed") == feature_head
    assert "already exists" in run_kvc("tag", "reviewed").stderr
    assert "tag NAME" in run_kvc("tag", "a b").stderr

    assert "current branch" in run_kvc("branch", "-d", "capitals").stderr
    assert run_kvc("switch", "main").exit_code == 0
    refused = run_kvc("branch", "-d", "capitals")
    assert refused.exit_code == 1 and "not merged" in refused.stderr
    assert "no branch named" in run_kvc("switch", "nope").stderr
    graph = run_kvc("log", "--graph", "--all")
    assert graph.exit_code == 0 and "capitals" in graph.stdout and "reviewed" in graph.stdout


def test_fast_forward_and_up_to_date(store_dir):
    assert run_kvc("branch", "ahead").exit_code == 0
    assert run_kvc("switch", "ahead").exit_code == 0
    _commit(store_dir, "a.kedit", FACTS[0])
    assert run_kvc("switch", "main").exit_code == 0
    result = run_kvc("merge", "ahead", QUIET)
    assert result.exit_code == 0 and "fast-forward" in result.stdout, result.output
    with open_store(store_dir) as store:
        assert store.head() == store.resolve("ahead")
        assert store.head_cache.for_commit(store.head()) is not None
    assert "up to date" in run_kvc("merge", "ahead", QUIET).stdout
    assert run_kvc("branch", "-d", "ahead").exit_code == 0  # merged now


def _diverged(project: Path, ours: list[str], theirs: list[str]) -> None:
    """main gets ``ours`` and branch feature (from the same start) ``theirs``, one commit each."""
    assert run_kvc("branch", "feature").exit_code == 0
    for i, body in enumerate(ours):
        _commit(project, f"o{i}.kedit", body)
    assert run_kvc("switch", "feature").exit_code == 0
    for i, body in enumerate(theirs):
        _commit(project, f"t{i}.kedit", body)
    assert run_kvc("switch", "main").exit_code == 0


def test_merge_re_solves_both_sides_into_a_two_parent_commit(store_dir):
    _commit(store_dir, "base.kedit", FACTS[2])
    _diverged(store_dir, [FACTS[0]], [FACTS[1]])
    ours_live, theirs_live = _live(store_dir), _live(store_dir, "feature")
    result = run_kvc("merge", "feature", QUIET, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["outcome"] == "merged" and report["method"] == "rome"
    with open_store(store_dir) as store:
        record = store.read_commit("HEAD")
        assert record.op == "merge"
        assert record.parents == (store.resolve("HEAD~1"), store.resolve("feature"))
        assert store.fsck() == []
    assert _live(store_dir) == {**ours_live, **theirs_live}
    graph = run_kvc("log", "--graph")
    assert graph.exit_code == 0 and "merge " in graph.stdout and "|\\" in graph.stdout.replace(" ", "")
    # A commit the merge re-solved cannot be reverted under it (its delta is gone already) ...
    refused = run_kvc("revert", "HEAD~1", QUIET)
    assert refused.exit_code == 1 and "re-solved by merge" in refused.stderr
    # ... and reverting the merge returns to ours exactly (its delta is relative to the first parent).
    assert run_kvc("revert", "HEAD", QUIET).exit_code == 0
    assert _live(store_dir) == ours_live
    with open_store(store_dir) as store:
        assert store.live_commits("HEAD") == store.live_commits("HEAD~2")


def test_merging_the_same_branch_again_keeps_every_edit_solved(store_dir):
    """The second merge's base is feature's old tip, whose delta the first merge re-solved
    away: its edit is re-solved again rather than listed live without weights."""
    _diverged(store_dir, [FACTS[0]], [FACTS[1]])
    assert run_kvc("merge", "feature", QUIET).exit_code == 0
    assert run_kvc("switch", "feature").exit_code == 0
    _commit(store_dir, "t2.kedit", FACTS[3])
    assert run_kvc("switch", "main").exit_code == 0
    second = run_kvc("merge", "feature", QUIET, "--json")
    assert second.exit_code == 0, second.output
    with open_store(store_dir) as store:
        first_tip = store.resolve("HEAD^2~1")
        assert store.repo.git.merge_base("HEAD~1", "feature") == first_tip
        solved = set(json.loads(second.stdout)["edit_ids"])
        carried_by_merges = set(store.read_commit("HEAD").edit_ids)
        assert solved == carried_by_merges == set(_live(store_dir))  # every live edit is in the last re-solve
        assert sorted(_live(store_dir).values()) == ["China", "Rome", "piano"]
        assert store.fsck() == []


def test_a_revert_on_one_side_since_the_base_is_merged_too(store_dir):
    """An edit live at the base that one side reverted is not live after the merge, and the
    merged weights no longer hold its delta: HEAD's live deltas sum to the start + re-solve."""
    _commit(store_dir, "base.kedit", FACTS[2])
    assert run_kvc("branch", "feature").exit_code == 0
    _commit(store_dir, "o.kedit", FACTS[0])
    assert run_kvc("switch", "feature").exit_code == 0
    assert run_kvc("revert", "HEAD", QUIET).exit_code == 0
    _commit(store_dir, "t.kedit", FACTS[1])
    assert run_kvc("switch", "main").exit_code == 0
    result = run_kvc("merge", "feature", QUIET)
    assert result.exit_code == 0, result.output
    assert sorted(_live(store_dir).values()) == ["China", "Rome"]
    with open_store(store_dir) as store:
        # Nothing live at the base is live on both sides, so the merge starts from the bare
        # base model: its delta undoes every commit live at ours, then adds the re-solve.
        merged = store.read_commit("HEAD").manifest["extra"]["merge"]
        assert merged["dropped"] == store.live_commits("HEAD~1") == [store.resolve("HEAD~2"), store.resolve("HEAD~1")]
        assert store.fsck() == []


def test_a_conflict_changes_nothing_then_abort_and_continue(store_dir):
    _diverged(store_dir, [FACTS[0]], [EIFFEL_OSLO + "\n" + FACTS[1]])
    before = _state(store_dir)
    stopped = run_kvc("merge", "feature", QUIET)
    assert stopped.exit_code == 1, stopped.output
    assert "conflict 1" in stopped.stdout and "'Eiffel Tower'" in stopped.stdout
    assert "Rome" in stopped.stdout and "Oslo" in stopped.stdout and "ours (main)" in stopped.stdout
    after = _state(store_dir)
    written = {".kvc/MERGE_STATE.json", ".kvc/MERGE_CONFLICTS.kedit"}
    assert set(after) - set(before) == written
    assert {k: v for k, v in after.items() if k not in written} == before  # refs, caches, working files
    assert "merge is stopped" in run_kvc("status").stdout
    assert "in progress" in run_kvc("merge", "feature", QUIET).stderr
    assert "in progress" in run_kvc("switch", "feature").stderr

    unedited = run_kvc("merge", "--continue", QUIET)
    assert unedited.exit_code != 0 and "MERGE_CONFLICTS.kedit:" in unedited.stderr
    assert run_kvc("merge", "--abort").exit_code == 0
    assert _state(store_dir) == before

    assert run_kvc("merge", "feature", QUIET).exit_code == 1
    spec = store_dir / ".kvc" / "MERGE_CONFLICTS.kedit"
    spec.write_text("\n".join(line for line in spec.read_text().splitlines() if '"Rome"' not in line) + "\n")
    finished = run_kvc("merge", "--continue", QUIET)
    assert finished.exit_code == 0, finished.output
    live = _live(store_dir)
    assert sorted(live.values()) == ["China", "Oslo"]
    assert not spec.exists() and not (store_dir / ".kvc" / "MERGE_STATE.json").exists()
    with open_store(store_dir) as store:
        assert store.fsck() == []


def test_cherry_pick_onto_its_own_parent_gives_that_commits_edits(store_dir):
    _commit(store_dir, "a.kedit", FACTS[0])
    _commit(store_dir, "b.kedit", FACTS[1] + "\n" + FACTS[3])
    with open_store(store_dir) as store:
        picked = store.head()
        picked_ids = set(store.read_commit(picked).edit_ids)
    assert run_kvc("branch", "again", "HEAD~1").exit_code == 0
    assert run_kvc("switch", "again").exit_code == 0
    result = run_kvc("cherry-pick", picked, QUIET, "--json")
    assert result.exit_code == 0, result.output
    assert _live(store_dir) == _live(store_dir, picked)
    with open_store(store_dir) as store:
        record = store.read_commit("HEAD")
        assert set(record.edit_ids) == picked_ids
        assert record.manifest["extra"]["cherry_picked_from"] == picked
    assert "all live here already" in run_kvc("cherry-pick", picked, QUIET).stdout
    # A pick that contradicts a live edit stops like a merge.
    oslo = run_kvc("commit", str(write_spec(store_dir, "c.kedit", EIFFEL_OSLO)), "--supersede", QUIET)
    assert oslo.exit_code == 0, oslo.output
    assert run_kvc("switch", "main").exit_code == 0
    before = _state(store_dir)
    stopped = run_kvc("cherry-pick", "again", QUIET)
    assert stopped.exit_code == 1 and "cherry-pick --continue" in stopped.stderr
    assert run_kvc("cherry-pick", "--abort").exit_code == 0
    assert _state(store_dir) == before
    # Kept the picked object: it supersedes HEAD's edit of the same fact.
    assert run_kvc("cherry-pick", "again", QUIET).exit_code == 1
    spec = store_dir / ".kvc" / "MERGE_CONFLICTS.kedit"
    spec.write_text("\n".join(line for line in spec.read_text().splitlines() if '"Rome"' not in line) + "\n")
    finished = run_kvc("cherry-pick", "--continue", QUIET)
    assert finished.exit_code == 0, finished.output
    assert sorted(_live(store_dir).values()) == ["China", "Oslo", "piano"]  # Rome superseded


def test_flags_are_checked():
    from kedit_vc.cli.branch_commands import _run

    with pytest.raises(UsageError, match="BRANCH"):
        _run("merge", None, None, None, (), False, False, False, False, False, 16, False, False)
    with pytest.raises(UsageError, match="exclude"):
        _run("merge", None, None, None, (), False, False, True, True, False, 16, False, False)
    with pytest.raises(UsageError, match="started with"):
        _run("merge", None, None, "memit", (), False, False, True, False, False, 16, False, False)


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(ours=st.sets(st.integers(0, 3), max_size=2), theirs=st.sets(st.integers(0, 3), min_size=1, max_size=2))
def test_merge_is_symmetric_in_the_edits_left_live(tmp_path_factory, tiny_model_dir, monkeypatch, ours, theirs):
    """Merging feature into main, or main into feature, leaves the same edits live: the
    base's and both sides' additions."""
    from kedit_vc.ops import branches, commit_spec, init
    from kedit_vc.ops.commit import CommitOptions
    from kedit_vc.ops.merge import merge

    folder = tmp_path_factory.mktemp("sym")
    monkeypatch.chdir(folder)
    with init(folder, str(tiny_model_dir)) as store:
        branches.create_branch(store, "feature")
        for side, picks in (("main", ours), ("feature", theirs)):
            branches.switch(store, side)
            for i in sorted(picks):
                commit_spec(store, write_spec(folder, f"{side}{i}.kedit", FACTS[i]), CommitOptions())
        branches.switch(store, "main")
        branches.create_branch(store, "main-copy")
        expected = {e.request.edit_id for rev in ("main", "feature") for e in live_edits(store, store.resolve(rev))}
        merge(store, "feature")
        into_main = {e.request.edit_id for e in live_edits(store, store.head())}
        branches.switch(store, "feature")
        merge(store, "main-copy")
        into_feature = {e.request.edit_id for e in live_edits(store, store.head())}
        assert into_main == into_feature == expected
        assert store.fsck() == []


def test_a_merged_history_survives_push_and_clone(store_dir, tmp_path, tiny_model_dir):
    """The two features meet: a two-parent commit goes through a bare remote, is verified
    on receipt, and the clone's HEAD gives the original's logits bit for bit."""
    import subprocess

    import torch

    from kedit_vc.store import Store
    from vcs_helpers import head_logits

    _commit(store_dir, "base.kedit", FACTS[2])
    _diverged(store_dir, [FACTS[0]], [FACTS[1]])
    assert run_kvc("merge", "feature", QUIET).exit_code == 0
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--bare", "-q", str(bare)], check=True)
    assert run_kvc("remote", "add", "origin", str(bare)).exit_code == 0
    pushed = run_kvc("push")
    assert pushed.exit_code == 0, pushed.output
    clone_dir = tmp_path / "clone"
    cloned = run_kvc("clone", str(bare), str(clone_dir))
    assert cloned.exit_code == 0, cloned.output
    with Store(store_dir) as a, Store(clone_dir) as b:
        assert b.read_commit("HEAD").op == "merge" and a.head() == b.head()
        assert a.fsck() == [] and b.fsck() == []
        assert torch.equal(head_logits(a, tiny_model_dir), head_logits(b, tiny_model_dir))


# -- strategies: compose and auto ---------------------------------------------------------------


def _dense(deltas) -> dict:
    """Tensor name -> the deltas' dense updates summed (float64, so the order does not matter)."""
    total: dict = {}
    for delta in deltas:
        for name in delta.updates:
            update = delta.dense(name).double()
            total[name] = total[name] + update if name in total else update
    return total


def test_a_compose_merge_is_the_base_plus_both_sides_deltas(store_dir):
    import torch

    _commit(store_dir, "base.kedit", FACTS[2])
    _diverged(store_dir, [FACTS[0]], [FACTS[1], FACTS[3]])
    ours_live, theirs_live = _live(store_dir), _live(store_dir, "feature")
    with open_store(store_dir) as store:
        base = store.repo.git.merge_base("HEAD", "feature")
        at_base = store.live_commits(base)
        ours_deltas = store.live_deltas("HEAD")
        theirs_since = [store.read_commit(c).delta() for c in store.live_commits("feature") if c not in at_base]
        assert len(theirs_since) == 2
    result = run_kvc("merge", "feature", "--strategy", "compose", QUIET)
    assert result.exit_code == 0, result.output
    assert "composed" in result.stdout and "strategy compose: --strategy compose" in result.stdout
    with open_store(store_dir) as store:
        merged = _dense(store.live_deltas("HEAD"))
        expected = _dense(ours_deltas + theirs_since)
        assert merged.keys() == expected.keys()
        for name, value in expected.items():  # equal up to float32 rounding of a dense sum
            scale = float(value.abs().max())
            torch.testing.assert_close(merged[name], value, rtol=0, atol=1e-5 * scale)
            assert scale > 0
        record = store.read_commit("HEAD")
        assert record.op == "merge" and record.method == "compose"
        assert record.manifest["extra"]["merge"]["strategy"] == "compose"
        assert store.fsck() == []
    assert _live(store_dir) == {**ours_live, **theirs_live}
    shown = run_kvc("show", "HEAD")
    assert shown.exit_code == 0 and "merge strategy compose: --strategy compose" in shown.stdout
    # Reverting the merge returns to ours exactly, as for a re-solved merge.
    assert run_kvc("revert", "HEAD", QUIET).exit_code == 0
    assert _live(store_dir) == ours_live


def test_auto_composes_when_the_re_solve_would_weaken_an_edit(store_dir, monkeypatch):
    """A re-solve that loses every edit's reliability (forced) is not what auto commits: it
    falls back to the composed deltas and records why, with both attempts."""
    import dataclasses

    from kedit_vc.ops import merge as merge_ops
    from kedit_vc.ops.squash import Loss

    real = merge_ops.resolve

    def losing(evaluator, plan, before, *args, **kwargs):
        solved = real(evaluator, plan, before, *args, **kwargs)
        lost = tuple(Loss(r.edit_id, r.subject, r.target_new, "reliability") for r in plan.requests)
        return dataclasses.replace(solved, losses=lost)

    monkeypatch.setattr(merge_ops, "resolve", losing)
    _diverged(store_dir, [FACTS[0]], [FACTS[1]])
    ours_live, theirs_live = _live(store_dir), _live(store_dir, "feature")
    forced = run_kvc("merge", "feature", "--strategy", "resolve", QUIET)
    assert forced.exit_code == 1 and "would weaken 2 edit(s)" in forced.stderr, forced.output
    result = run_kvc("merge", "feature", QUIET, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["strategy"] == "compose" and report["method"] == "compose" and report["losses"] == []
    assert [a["strategy"] for a in report["attempts"]] == ["resolve", "compose"]
    assert [a["edits_weakened"] for a in report["attempts"]] == [2, 0]
    assert "rome re-solve would weaken 2 edit(s)" in report["reason"]
    with open_store(store_dir) as store:
        merged = store.read_commit("HEAD").manifest["extra"]["merge"]
        assert merged["strategy"] == "compose" and merged["strategy_reason"] == report["reason"]
        assert store.fsck() == []
    assert _live(store_dir) == {**ours_live, **theirs_live}
    assert "merge strategy compose: auto: the rome re-solve would weaken" in run_kvc("show", "HEAD").stdout


def test_auto_keeps_a_re_solve_that_weakens_nothing(store_dir):
    _diverged(store_dir, [FACTS[0]], [FACTS[1]])
    result = run_kvc("merge", "feature", QUIET, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    if report["attempts"][0]["edits_weakened"] == 0:  # the tiny model's re-solve usually keeps both
        assert report["strategy"] == "resolve" and len(report["attempts"]) == 1
        assert report["reason"] == "auto: the rome re-solve weakens no edit"
    else:
        assert len(report["attempts"]) == 2


def test_strategy_flags_are_checked(store_dir):
    from kedit_vc.ops.merge import check_strategy

    with pytest.raises(UsageError, match="choose one of"):
        check_strategy("octopus", None, None)
    with pytest.raises(UsageError, match="runs no editor"):
        check_strategy("compose", "memit", None)
    assert check_strategy("AUTO", "memit", {"v_steps": 3}) == "auto"
    refused = run_kvc("merge", "--continue", "--strategy", "compose")
    assert refused.exit_code != 0 and "started with" in refused.output


def test_compose_cannot_settle_a_conflict(store_dir):
    _diverged(store_dir, [FACTS[0]], [EIFFEL_OSLO])
    assert run_kvc("merge", "feature", "--strategy", "compose", QUIET).exit_code == 1
    spec = store_dir / ".kvc" / "MERGE_CONFLICTS.kedit"
    spec.write_text("\n".join(line for line in spec.read_text().splitlines() if '"Oslo"' not in line) + "\n")
    refused = run_kvc("merge", "--continue", QUIET)
    assert refused.exit_code != 0 and "cannot drop one side of a" in refused.output
    assert run_kvc("merge", "--abort").exit_code == 0


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(ours=st.sets(st.integers(0, 3), max_size=2), theirs=st.sets(st.integers(0, 3), min_size=1, max_size=2))
def test_a_compose_merge_is_symmetric_in_the_edits_left_live(tmp_path_factory, tiny_model_dir, monkeypatch,
                                                             ours, theirs):
    """As for the re-solve: either side merging the other leaves the same edits live (an
    edit both sides committed is summed once), and the store stays sound."""
    from kedit_vc.ops import branches, commit_spec, init
    from kedit_vc.ops.commit import CommitOptions
    from kedit_vc.ops.merge import merge

    folder = tmp_path_factory.mktemp("sym-compose")
    monkeypatch.chdir(folder)
    with init(folder, str(tiny_model_dir)) as store:
        branches.create_branch(store, "feature")
        for side, picks in (("main", ours), ("feature", theirs)):
            branches.switch(store, side)
            for i in sorted(picks):
                commit_spec(store, write_spec(folder, f"{side}{i}.kedit", FACTS[i]), CommitOptions())
        branches.switch(store, "main")
        branches.create_branch(store, "main-copy")
        expected = {e.request.edit_id for rev in ("main", "feature") for e in live_edits(store, store.resolve(rev))}
        merge(store, "feature", strategy="compose", allow_loss=True)
        into_main = {e.request.edit_id for e in live_edits(store, store.head())}
        branches.switch(store, "feature")
        merge(store, "main-copy", strategy="compose", allow_loss=True)
        into_feature = {e.request.edit_id for e in live_edits(store, store.head())}
        assert into_main == into_feature == expected
        assert store.fsck() == []


def test_a_criss_cross_merge_is_refused_naming_both_bases(store_dir):
    """main and feature each merged the other's tip: two merge bases; the third merge stops
    before anything is solved, naming them."""
    _diverged(store_dir, [FACTS[0]], [FACTS[1]])
    with open_store(store_dir) as store:
        tips = store.resolve("main"), store.resolve("feature")
        branches_at = {"main-tip": tips[0]}
    assert run_kvc("branch", "main-tip").exit_code == 0
    assert run_kvc("merge", "feature", QUIET).exit_code == 0          # main: M1 (main-tip + feature)
    assert run_kvc("switch", "feature").exit_code == 0
    assert run_kvc("merge", "main-tip", QUIET).exit_code == 0         # feature: M2 (feature + main-tip)
    assert run_kvc("switch", "main").exit_code == 0
    before = _state(store_dir)
    refused = run_kvc("merge", "feature", QUIET)
    assert refused.exit_code != 0
    assert "2 merge bases" in refused.stderr and "criss-cross" in refused.stderr
    for sha in (*tips, branches_at["main-tip"]):
        assert sha[:10] in refused.stderr
    assert _state(store_dir) == before

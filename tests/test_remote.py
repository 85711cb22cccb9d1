"""Remotes on a tiny random Llama: push, clone and pull through a bare repository in a
temporary directory; a diverged pull is refused; two processes pushing at once."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import run_kvc
from kedit_vc.store import CommitInput, Store, init_store
from store_helpers import history_ops, random_step
from vcs_helpers import cheap_delta, commit_delta, head_logits

ROOT = Path(__file__).resolve().parents[1]


def ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def one_line_error(result, *fragments: str) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    text = result.stderr.strip()
    assert len(text.splitlines()) == 1, text
    for fragment in fragments:
        assert fragment in text, text
    return text


@pytest.fixture(scope="module")
def tiny_fingerprint(tiny_model_dir) -> str:
    from kedit_vc.models import load_model

    return load_model(str(tiny_model_dir), progress=False).fingerprint


@pytest.fixture()
def origin(project, tiny_model_dir, tiny_fingerprint):
    """A store in ``project`` with edits, a revert, a squash and dense deltas large enough
    to be kept beside git (.kvc/objects), and an empty bare remote beside it, added as ``origin``."""
    with init_store(project, str(tiny_model_dir), tiny_fingerprint, large_delta_bytes=16384) as store:
        for seed in range(4):
            commit_delta(store, cheap_delta(seed), f"edit {seed}")
        chain = store.chain()
        store.write_commit(CommitInput("squash 1-2", cheap_delta(1).compose(cheap_delta(2)), op="squash",
                                       squash_range=(chain[0], chain[2])))
        commit_delta(store, cheap_delta(10, dense=True), "dense edit")
        store.write_commit(CommitInput("revert", op="revert", reverts=store.chain()[2]))
        commit_delta(store, cheap_delta(11, dense=True), "dense edit 2")
        assert store.squashed_refs()
    bare = project.parent / "remote.git"
    subprocess.run(["git", "init", "--bare", "-q", str(bare)], check=True)
    ok(run_kvc("remote", "add", "origin", str(bare)))
    return bare


def fsck_clean(root: Path) -> None:
    with Store(root) as store:
        assert store.fsck() == []


def state(root: Path) -> tuple:
    """What a refused command must leave as it was: HEAD, branch refs, squashed refs, cache bytes."""
    with Store(root) as store:
        cache = store.paths.head_cache.read_bytes() if store.paths.head_cache.exists() else b""
        return store.head(), store.repo.git.for_each_ref("refs/heads", "refs/kvc"), cache


def test_push_clone_pull_keep_fsck_clean_and_logits_bit_identical(origin, project, tiny_model_dir, tmp_path):
    assert "origin" in ok(run_kvc("remote")) and str(origin) in ok(run_kvc("remote"))
    assert "main" in ok(run_kvc("push"))
    assert "up to date" in ok(run_kvc("push"))
    clone_dir = tmp_path / "clone"
    assert "cloned" in ok(run_kvc("clone", str(origin), str(clone_dir)))
    fsck_clean(project)
    fsck_clean(clone_dir)
    with Store(project) as a, Store(clone_dir) as b:
        assert a.chain() == b.chain() and a.squashed_refs() == b.squashed_refs()
        large = sorted(p.name for p in a.paths.objects.rglob("*.safetensors"))
        assert len(large) == 2 and sorted(p.name for p in b.paths.objects.rglob("*.safetensors")) == large
        assert b.head_cache.for_commit(b.head()) is not None  # the clone's cache is built, for HEAD
        assert torch.equal(head_logits(a, tiny_model_dir), head_logits(b, tiny_model_dir))
        commit_delta(a, cheap_delta(20, dense=True), "later dense edit")
        commit_delta(a, cheap_delta(21), "later edit")
    ok(run_kvc("push"))
    os.chdir(clone_dir)
    assert "fast-forwarded" in ok(run_kvc("pull"))
    assert "up to date" in ok(run_kvc("pull", "origin"))
    fsck_clean(clone_dir)
    with Store(project) as a, Store(clone_dir) as b:
        assert a.head() == b.head()
        assert torch.equal(head_logits(a, tiny_model_dir), head_logits(b, tiny_model_dir))


def test_diverged_pull_is_refused_and_changes_nothing(origin, project, tmp_path):
    ok(run_kvc("push"))
    clone_dir = tmp_path / "clone"
    ok(run_kvc("clone", str(origin), str(clone_dir)))
    with Store(project) as a:
        commit_delta(a, cheap_delta(30), "theirs")
    ok(run_kvc("push"))
    with Store(clone_dir) as b:
        commit_delta(b, cheap_delta(31), "ours")
        b.live_sum()  # the cache is for HEAD
    before = state(clone_dir)
    os.chdir(clone_dir)
    one_line_error(run_kvc("pull"), "diverged", "kvc merge origin/main")
    assert state(clone_dir) == before
    fsck_clean(clone_dir)
    with Store(clone_dir) as b, Store(project) as a:  # the verified remote-tracking ref is there for merge
        assert b.resolve("refs/remotes/origin/main") == a.head()
    one_line_error(run_kvc("push"), "kvc pull origin")  # and the remote refuses our push


def test_errors_name_what_to_do(origin, project, tmp_path):
    one_line_error(run_kvc("push", "upstream"), "unknown remote 'upstream'", "kvc remote add upstream")
    one_line_error(run_kvc("remote", "add", "origin", "/elsewhere"), "already exists")
    ok(run_kvc("remote", "add", "nowhere", str(tmp_path / "missing.git")))
    one_line_error(run_kvc("pull", "nowhere"), "cannot reach")
    one_line_error(run_kvc("clone", str(tmp_path / "missing.git"), str(tmp_path / "c1")), "cannot reach")
    one_line_error(run_kvc("clone", str(origin), str(tmp_path / "c2")), "no branches", "kvc push")
    plain = tmp_path / "plain.git"
    subprocess.run(["git", "init", "--bare", "-q", str(plain)], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "README").write_text("not a store\n")
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    subprocess.run([*git, "push", "-q", str(plain), "main"], check=True)
    one_line_error(run_kvc("clone", str(plain), str(tmp_path / "c3")), "not a kvc store")
    assert not (tmp_path / "c3" / ".kvc").exists()
    ok(run_kvc("remote", "add", "plain", str(plain)))
    before = state(project)
    one_line_error(run_kvc("pull", "plain"), "not a sound kvc history")
    assert state(project) == before
    fsck_clean(project)


def test_a_removed_remote_is_forgotten_with_its_tracking_refs(origin, project):
    ok(run_kvc("push"))
    ok(run_kvc("pull"))
    with Store(project) as store:
        assert store.resolve("refs/remotes/origin/main") == store.head()
    assert f"removed remote origin ({origin})" in ok(run_kvc("remote", "remove", "origin"))
    assert ok(run_kvc("remote")).startswith("no remotes")
    with Store(project) as store:
        assert not [r for r in store.repo.git.for_each_ref("--format=%(refname)").split() if "remotes/origin" in r]
        assert store.fsck() == []
    one_line_error(run_kvc("remote", "remove", "origin"), "unknown remote 'origin'")
    one_line_error(run_kvc("push"), "no remote", "kvc remote add origin")


def _push_process(root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-m", "kedit_vc.cli.main", "push"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_pushing_at_once_corrupt_neither_side(origin, project, tmp_path):
    ok(run_kvc("push"))
    sides = [tmp_path / "b", tmp_path / "c"]
    for i, side in enumerate(sides):
        ok(run_kvc("clone", str(origin), str(side)))
        with Store(side) as store:
            for k in range(3):
                commit_delta(store, cheap_delta(100 * (i + 1) + k), f"side {i} edit {k}")
    procs = [_push_process(side) for side in sides]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = [code for code, _ in outcomes]
    assert sorted(codes) == [0, 1], outcomes  # the histories diverge: exactly one wins
    loser_err = next(err for code, err in outcomes if code)
    assert "kvc pull" in loser_err and "Traceback" not in loser_err
    winner = sides[codes.index(0)]
    check = subprocess.run(["git", f"--git-dir={origin}", "fsck", "--no-dangling"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    final = tmp_path / "final"
    ok(run_kvc("clone", str(origin), str(final)))
    for side in (*sides, final, project):
        fsck_clean(side)
    with Store(winner) as w, Store(final) as f:
        assert w.head() == f.head()


def test_a_store_that_pruned_its_squashed_history_clones_clean(origin, project, tmp_path):
    ok(run_kvc("gc", "--prune-squashed"))
    ok(run_kvc("push"))
    clone_dir = tmp_path / "clone"
    ok(run_kvc("clone", str(origin), str(clone_dir)))
    fsck_clean(clone_dir)
    with Store(clone_dir) as store:
        assert store.squashed_refs() == {}


@settings(max_examples=5, deadline=None)
@example(ops=[("edit", 548), ("edit", 207), ("squash", 0, 1)], later=[("edit", 3)])  # a squash that replayed
@given(history_ops(max_size=7), st.lists(st.tuples(st.sampled_from(["edit", "revert"]), st.integers(0, 10**6)),
                                          max_size=3))
def test_any_history_survives_push_clone_and_pull(ops, later):
    """Random edits, reverts and squashes, pushed and cloned, then more edits and reverts
    pulled: both sides fsck-clean, same chain, kept histories and HEAD sums, bit for bit."""
    from kedit_vc.ops.remote import add_remote, clone, pull, push

    def same_sums(a: Store, b: Store) -> None:
        x, y = a.live_sum().updates, b.live_sum().updates
        assert set(x) == set(y) and all(torch.equal(x[n].dense(), y[n].dense()) for n in x)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(["git", "init", "--bare", "-q", str(root / "r.git")], check=True)
        with init_store(root / "a", "m", "fp") as a:
            expected: dict = {}
            for op in ops:
                random_step(a, op, expected)
            add_remote(a, "origin", str(root / "r.git"))
            push(a)
            with clone(str(root / "r.git"), root / "b") as b:
                assert b.fsck() == [] and b.chain() == a.chain() and b.squashed_refs() == a.squashed_refs()
                same_sums(a, b)
                for op in later:
                    random_step(a, op, expected)
                push(a)
                moved = a.head() != b.head()
                assert pull(b).status == ("fast-forward" if moved else "up-to-date")
                assert b.fsck() == [] and a.fsck() == [] and b.chain() == a.chain()
                same_sums(a, b)


def test_a_tampered_commit_is_refused_on_pull(origin, project, tmp_path):
    """A commit whose delta does not match its manifest's hash never reaches a ref."""
    from kedit_vc.store import gitio

    ok(run_kvc("push"))
    evil = tmp_path / "evil"
    ok(run_kvc("clone", str(origin), str(evil)))
    with Store(evil) as store:
        head = store.head()
        files = {name: gitio.blob_bytes(blob) for name, blob in gitio.read_files(store.repo, head).items()}
        assert "delta.safetensors" in files or "delta.pointer.json" in files
        other = cheap_delta(999)
        files.pop("delta.pointer.json", None)
        files["delta.safetensors"] = other.to_bytes()  # the manifest still names the old hash
        forged = gitio.write_commit(store.repo, gitio.write_tree(store.repo, files), [head], "forged")
        store.repo.git.update_ref("refs/heads/main", forged)
        subprocess.run(["git", f"--git-dir={store.repo.git_dir}", "push", "-q", "origin", "main"], check=True)
    before = state(project)
    one_line_error(run_kvc("pull"), "not a sound kvc history", forged[:10])
    assert state(project) == before
    fsck_clean(project)
    with Store(project) as store:
        refs = store.repo.git.for_each_ref("refs/")
        assert forged not in refs and "refs/kvc/incoming" not in refs
    one_line_error(run_kvc("clone", str(origin), str(tmp_path / "c")), "not a sound kvc store")
    assert not (tmp_path / "c" / ".kvc").exists()

"""The store's API: init/open, commit records, resolve, revert, squash, objects, fsck."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
import torch

from kedit_vc.delta import Delta, DeltaError, Dense, LowRank, materialize
from kedit_vc.errors import StoreError
from kedit_vc.store import CommitInput, init_store, open_store
from kedit_vc.store.lock import StoreLock
from store_helpers import add_into, assert_sums_match, small_delta

FP = "sha256:base-fingerprint"


@pytest.fixture
def store(tmp_path):
    with init_store(tmp_path / "project", "smollm2", FP) as s:
        yield s


def edit(store, seed, **kwargs):
    return store.write_commit(CommitInput(f"edit {seed}", small_delta(seed), **kwargs))


def test_init_records_the_base_model_and_ignores_itself(tmp_path):
    project = tmp_path / "project"
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    store = init_store(project, "smollm2", FP)
    assert (store.model_ref, store.fingerprint) == ("smollm2", FP)
    assert (project / ".kvc" / ".gitignore").read_text().splitlines()[-1] == "*"
    edit(store, 1)
    status = subprocess.run(["git", "status", "--porcelain", "--ignored=no"], cwd=project, capture_output=True,
                            text=True, check=True).stdout
    assert status == ""  # the project's own repository does not see the store
    assert not list(project.glob(".kvc.init-*"))
    with pytest.raises(StoreError, match="already exists"):
        init_store(project, "smollm2", FP)


def test_open_store_searches_upward(store, tmp_path):
    sub = store.paths.root / "a" / "b"
    sub.mkdir(parents=True)
    assert open_store(sub).paths.root == store.paths.root
    with pytest.raises(StoreError, match="kvc init"):
        open_store(tmp_path)


def test_commit_record_round_trips_everything(store):
    delta = Delta({"w": LowRank(torch.randn(6, 1), torch.randn(4, 1))}, {"method": "rome"})
    keys = {4: torch.randn(2, 4)}
    sha = store.write_commit(CommitInput(
        "Eiffel Tower in Rome", delta, spec_text="edit e1 ...\n", spec_name="demo.kedit", plan={"version": 1, "calls": []},
        metrics={"reliability": 1.0}, method="rome", hparams={"layer": 4}, edit_ids=("e-1",),
        timings={"edit_s": 1.5}, keys=keys))
    assert store.head() == sha
    record = store.read_commit("HEAD")
    assert (record.sha, record.message, record.op, record.method) == (sha, "Eiffel Tower in Rome", "edit", "rome")
    assert record.spec_text == "edit e1 ...\n" and record.plan == {"version": 1, "calls": []}
    assert record.metrics == {"reliability": 1.0} and record.edit_ids == ("e-1",)
    assert record.delta().content_hash() == delta.content_hash() == record.delta_hash
    assert torch.equal(record.keys()[4], keys[4])
    manifest = record.manifest
    assert manifest["parent"] == store.chain()[0] and manifest["base"] == {"model": "smollm2", "fingerprint": FP}
    assert manifest["hparams"] == {"layer": 4} and manifest["timings"] == {"edit_s": 1.5}
    assert manifest["delta"]["storage"] == "git" and manifest["keys"] == {"layers": [4]}
    raw = store.repo.git.show(f"{sha}:manifest.json")
    assert list(json.loads(raw)) == sorted(json.loads(raw))
    assert set(record.files) == {"store.json", "manifest.json", "spec.kedit", "plan.json", "metrics.json",
                                 "delta.safetensors", "keys.safetensors"}
    assert store.fsck() == []


def test_resolve_and_log(store):
    first, second = edit(store, 1), edit(store, 2)
    store.repo.create_tag("v1", ref=first)
    assert store.resolve("HEAD") == second and store.resolve("HEAD~1") == first
    assert store.resolve(first[:8]) == first and store.resolve("v1") == first
    for bad in ("nope", "HEAD~9", "--all"):
        with pytest.raises(StoreError, match="unknown revision"):
            store.resolve(bad)
    log = store.log()
    assert [r.sha for r in log] == [second, first, store.chain()[0]] and log[-1].op == "init"
    assert [r.sha for r in store.log(limit=1)] == [second]


def test_revert_writes_the_exact_inverse_and_cancels(store):
    a, b = edit(store, 1), edit(store, 2)
    r = store.write_commit(CommitInput("revert", op="revert", reverts="HEAD~1"))
    record = store.read_commit(r)
    assert record.reverts == a and record.delta().content_hash() == store.read_commit(a).delta().inverse().content_hash()
    assert store.live_commits() == [b]
    with pytest.raises(StoreError, match="initial commit"):
        store.write_commit(CommitInput("x", op="revert", reverts=store.chain()[0]))
    with pytest.raises(StoreError, match="exact inverse"):
        store.write_commit(CommitInput("x", small_delta(5), op="revert", reverts=b))
    rr = store.write_commit(CommitInput("revert the revert", op="revert", reverts=r))
    assert store.live_commits() == [b, rr]
    assert store.fsck() == []


def test_squash_replaces_a_range_and_keeps_history(store):
    shas = [edit(store, i) for i in range(4)]
    base, inside, after = shas[0], shas[1:3], shas[3]
    expected: dict = {}
    for d in store.live_deltas():
        add_into(expected, d)
    squashed = store.read_commit(inside[0]).delta().compose(store.read_commit(inside[1]).delta())
    old_head = store.head()
    sq = store.write_commit(CommitInput("squash", squashed, op="squash", squash_range=(base, inside[-1])))
    chain = store.chain()
    assert chain[-3:-1] == [base, sq] and len(chain) == 4
    replay = store.read_commit("HEAD")
    assert replay.message == f"edit 3" and replay.manifest["parent"] == sq and replay.delta_hash == store.read_commit(after).delta_hash
    assert store.squashed_refs() == {f"refs/kvc/squashed/{old_head}": old_head}
    assert store.read_commit(sq).squash == {"base": base, "tip": inside[-1], "commits": inside,
                                            "kept_at": f"refs/kvc/squashed/{old_head}"}
    assert_sums_match(materialize(store.live_deltas()), expected)
    with pytest.raises(StoreError, match="not in the history of HEAD"):
        store.write_commit(CommitInput("x", op="revert", reverts=inside[0]))
    assert store.fsck() == []


def test_squash_refuses_ranges_that_would_break_cancellation(store):
    a, b = edit(store, 1), edit(store, 2)
    r = store.write_commit(CommitInput("revert a", op="revert", reverts=a))
    with pytest.raises(StoreError, match="before it"):
        store.write_commit(CommitInput("sq", small_delta(3), op="squash", squash_range=(b, r)))
    store.write_commit(CommitInput("revert b", op="revert", reverts=b))
    with pytest.raises(StoreError, match="after the range"):
        store.write_commit(CommitInput("sq", small_delta(3), op="squash", squash_range=(a, b)))
    with pytest.raises(StoreError, match="not a range"):
        store.write_commit(CommitInput("sq", small_delta(3), op="squash", squash_range=(b, a)))


def test_large_dense_deltas_go_to_objects(tmp_path):
    store = init_store(tmp_path, "m", FP, large_delta_bytes=1000)
    big = Delta({"w": Dense(torch.randn(40, 40))})
    sha = store.write_commit(CommitInput("ft", big))
    record = store.read_commit(sha)
    assert "delta.pointer.json" in record.files and "delta.safetensors" not in record.files
    assert record.manifest["delta"]["storage"] == "object"
    path = store.paths.object_path(big.content_hash())
    assert record.delta().content_hash() == big.content_hash()
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(DeltaError, match="altered"):
        record.delta()
    assert any("altered" in p for p in store.fsck())
    path.unlink()
    with pytest.raises(StoreError, match="missing"):
        store.live_deltas()
    assert any("missing" in p for p in store.fsck())


def test_deltas_made_for_another_base_are_refused(store):
    edit(store, 1)
    store.check_base(FP)
    with pytest.raises(StoreError, match="made for model 'smollm2'"):
        store.check_base("other")
    store._config = type(store.config)("smollm2", "other")  # simulate a commit from another base
    edit(store, 2)
    store._config = None
    with pytest.raises(StoreError, match="another base model"):
        store.live_deltas()
    assert any("not the store's" in p for p in store.fsck())


def test_expected_head_guards_against_a_moved_head(store):
    old = store.head()
    edit(store, 1)
    with pytest.raises(StoreError, match="HEAD moved"):
        store.write_commit(CommitInput("late", small_delta(2)), expected_head=old)


def test_git_sees_an_ordinary_history(store):
    edit(store, 1)
    out = subprocess.run(["git", "--git-dir", str(store.paths.repo), "log", "--format=%s"], capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert out[:2] == ["edit 1", "kvc init: smollm2"]


def test_lock_refuses_a_second_writer_naming_the_holder(store):
    with store.lock():
        other = StoreLock(store.paths.lock)
        with pytest.raises(StoreError, match=r"being written by process \d+ .*--wait"):
            other.acquire()
        start = time.monotonic()
        with pytest.raises(StoreError, match="after waiting 0.2s"):
            other.acquire(wait=True, timeout=0.2)
        assert time.monotonic() - start >= 0.2


def test_lock_wait_succeeds_once_released(store):
    holder = StoreLock(store.paths.lock)
    holder.acquire()
    threading.Timer(0.3, holder.release).start()
    sha = store.write_commit(CommitInput("waited", small_delta(1)), wait=True, timeout=10)
    assert store.head() == sha


def test_live_deltas_sum_after_mixed_history(store):
    expected: dict = {}
    shas = []
    for seed in range(5):
        shas.append(edit(store, seed))
        add_into(expected, small_delta(seed))
    store.write_commit(CommitInput("r", op="revert", reverts=shas[2]))
    add_into(expected, small_delta(2), -1.0)
    assert store.live_commits() == shas[:2] + shas[3:]
    assert_sums_match(materialize(store.live_deltas()), expected)
    assert set(store.live_keys()) == set()

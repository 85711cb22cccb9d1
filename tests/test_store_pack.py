"""Packing after each write (``gitio.pack``): no loose objects left, few packs, and the
history stays sound and readable, also by a reader opened before the repack."""

from __future__ import annotations

import subprocess

import pytest
import torch

from kedit_vc.store import CommitInput, Store, gitio, init_store
from store_helpers import small_delta


def objects(store) -> dict[str, int]:
    out = subprocess.run(["git", f"--git-dir={store.paths.repo}", "count-objects", "-v"], capture_output=True,
                         text=True, check=True).stdout
    return {k: int(v) for k, v in (line.split(": ") for line in out.splitlines())}


@pytest.fixture
def store(tmp_path):
    with init_store(tmp_path / "project", "m", "fp") as s:
        yield s


def test_writes_leave_everything_packed_and_sound(store):
    assert objects(store)["count"] == 0  # init packs too
    shas = [store.write_commit(CommitInput(f"edit {i}", small_delta(i), keys={1: torch.randn(1, 7)},
                                           spec_text=f"spec {i}\n")) for i in range(20)]
    store.write_commit(CommitInput("revert", op="revert", reverts=shas[3]))
    store.write_commit(CommitInput("squash", small_delta(99), op="squash", squash_range=(shas[5], shas[8])))
    counts = objects(store)
    assert counts["count"] == 0 and counts["garbage"] == 0
    assert 1 <= counts["packs"] <= 6  # geometric roll-up: about log2 of the objects
    assert store.fsck() == []
    for record in store.log():
        if record.op != "init":
            assert record.delta().content_hash() == record.delta_hash
    assert store.squashed_refs()


def test_a_reader_opened_before_the_repack_still_reads_everything(store):
    first = store.write_commit(CommitInput("first", small_delta(1)))
    with Store(store.paths.root) as reader:
        assert reader.read_commit(first).delta() is not None  # its git cat-file processes are running
        for i in range(12):  # packs merge and loose objects go while it stays open
            store.write_commit(CommitInput(f"edit {i}", small_delta(i + 2)))
        assert len(reader.log()) == 14
        for record in reader.log():
            if record.op != "init":
                assert record.delta().content_hash() == record.delta_hash


def test_a_failed_repack_does_not_fail_the_commit(store, monkeypatch, caplog):
    def broken(repo, keep_fds=()):
        raise subprocess.CalledProcessError(128, ["git", "repack"], stderr=b"fatal: out of disk")

    monkeypatch.setattr(gitio, "pack", broken)
    sha = store.write_commit(CommitInput("edit", small_delta(1)))
    assert store.head() == sha and "out of disk" in caplog.text
    monkeypatch.undo()
    assert objects(store)["count"] > 0  # left loose...
    store.write_commit(CommitInput("edit", small_delta(2)))
    assert objects(store)["count"] == 0 and store.fsck() == []  # ...and packed by the next write


def test_the_repack_runs_under_the_writer_lock(store, monkeypatch):
    seen = []
    real = gitio.pack

    def spy(repo, keep_fds=()):
        seen.append((store._lock.held, tuple(keep_fds)))
        real(repo, keep_fds)

    monkeypatch.setattr(gitio, "pack", spy)
    store.write_commit(CommitInput("edit", small_delta(1)))
    assert seen and seen[0][0] and len(seen[0][1]) == 1  # held, and handed to git


def test_without_auto_pack_objects_stay_loose(store, monkeypatch):
    monkeypatch.setattr(Store, "auto_pack", False)
    store.write_commit(CommitInput("edit", small_delta(1)))
    assert objects(store)["count"] > 0 and store.fsck() == []

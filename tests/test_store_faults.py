"""Fault injection and concurrency: a writer killed anywhere leaves the store sound.

Writers run in forked subprocesses (torch is already imported, so they start at once)
and are SIGKILLed at random moments of a commit, revert or squash (packing included),
or right before or after each atomic rename. Every time ``fsck`` must be clean and HEAD
the old or the new commit once the writer's lock is free (a killed writer's ``git
repack`` keeps the lock until it is done).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import pytest

from kedit_vc.errors import StoreError
from kedit_vc.store import CommitInput, Store, init_store
from kedit_vc.store.lock import StoreLock
from store_helpers import small_delta

FORK = multiprocessing.get_context("fork")
TRIALS = 24


def _payload(store: Store, kind: str, seed: int) -> CommitInput:
    message = f"trial {seed}"
    head = store.read_commit("HEAD")
    if kind == "revert" and head.op != "init":
        return CommitInput(message, op="revert", reverts=head.sha)
    if kind == "squash" and head.op == "edit" and len(store.chain()) > 2:
        return CommitInput(message, head.delta(), op="squash", squash_range=("HEAD~1", "HEAD"))
    return CommitInput(message, small_delta(seed, kinds=("dense", "lowrank")))


def _writer(root: str, kind: str, seed: int, ready, kill_at_replace: int | None = None) -> None:
    """Child: prepare, signal ready, write one commit (optionally die at the n-th rename)."""
    if kill_at_replace is not None:
        real, count = os.replace, [0]

        def replace(src, dst):
            count[0] += 1
            if count[0] == kill_at_replace:
                os.kill(os.getpid(), signal.SIGKILL)
            real(src, dst)
            if count[0] + 100 == kill_at_replace:  # n + 100: die right after the n-th rename
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace
    store = Store(root)
    payload = _payload(store, kind, seed)
    ready.set()
    store.write_commit(payload)
    os._exit(0)


def _check(root: str, old_head: str, seed: int) -> str:
    with Store(root) as store, store.lock(wait=True, timeout=60):  # a killed writer's repack holds it until done
        assert store.fsck() == []
        head = store.head()
        assert head == old_head or store.read_commit(head).message == f"trial {seed}"
        return head


def _run_child(root: str, kind: str, seed: int, delay: float | None, kill_at_replace: int | None = None) -> None:
    ready = FORK.Event()
    child = FORK.Process(target=_writer, args=(root, kind, seed, ready, kill_at_replace))
    child.start()
    assert ready.wait(30)
    if delay is not None:
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
    child.join(30)


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "project"
    with init_store(path, "m", "fp", large_delta_bytes=200) as store:  # dense deltas go to objects/
        for seed in range(3):
            store.write_commit(CommitInput(f"setup {seed}", small_delta(seed)))
    return str(path)


def _write_time(root: str) -> float:
    with Store(root) as store:
        start = time.monotonic()
        store.write_commit(CommitInput("timing", small_delta(99)))
        return time.monotonic() - start


def test_kill_at_random_moments_leaves_old_or_new_head(root):
    rnd = random.Random(1234)
    span = 1.5 * _write_time(root)
    kept_old = 0
    for trial in range(TRIALS):
        kind = ("edit", "revert", "squash")[trial % 3]
        with Store(root) as store:
            old = store.head()
        _run_child(root, kind, 1000 + trial, rnd.uniform(0, span))
        kept_old += _check(root, old, 1000 + trial) == old
    print(f"{kept_old} of {TRIALS} kills left the old HEAD, {TRIALS - kept_old} came after the new one")


@pytest.mark.parametrize("kill_at", [1, 2, 3, 101, 102, 103])
@pytest.mark.parametrize("kind", ["edit", "squash"])
def test_kill_around_each_rename(root, kind, kill_at):
    with Store(root) as store:
        old = store.head()
    _run_child(root, kind, 7, None, kill_at_replace=kill_at)
    _check(root, old, 7)
    with Store(root) as store:  # the next writer sweeps the strays and succeeds
        store.write_commit(CommitInput("after", small_delta(8)))
        assert store.fsck() == [] and not list(store.paths.tmp.iterdir())


def _concurrent_writer(root: str, seed: int, wait: bool, results) -> None:
    try:
        with Store(root) as store:
            results.put((seed, store.write_commit(CommitInput(f"writer {seed}", small_delta(seed)), wait=wait, timeout=60)))
    except StoreError as error:
        results.put((seed, f"error: {error}"))


def test_two_concurrent_writers_both_land_when_waiting(root):
    results = FORK.Queue()
    children = [FORK.Process(target=_concurrent_writer, args=(root, s, True, results)) for s in (1, 2)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    shas = dict(results.get(timeout=5) for _ in children)
    with Store(root) as store:
        assert set(shas.values()) <= set(store.chain())  # nothing lost
        assert {store.read_commit(s).message for s in store.chain()[-2:]} == {"writer 1", "writer 2"}
        assert store.fsck() == []


def test_a_second_writer_fails_clearly_without_wait(root):
    holder = StoreLock(Store(root).paths.lock)
    holder.acquire()
    try:
        results = FORK.Queue()
        child = FORK.Process(target=_concurrent_writer, args=(root, 5, False, results))
        child.start()
        child.join(30)
        seed, outcome = results.get(timeout=5)
        assert outcome.startswith("error:") and f"process {os.getpid()}" in outcome and "--wait" in outcome
    finally:
        holder.release()

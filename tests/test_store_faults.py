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
import shutil
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


class _RenameLog:
    """The child's record of its atomic renames, written unbuffered so a SIGKILL cannot lose it.

    Lines: ``begin DST`` before each ``os.replace``, ``end DST`` after it, ``done`` once
    ``write_commit`` returned. The parent reads it to tell where the kill landed.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def install(self, kill_before: int | None = None, kill_after: int | None = None) -> None:
        real, count, fd = os.replace, [0], os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

        def replace(src, dst):
            count[0] += 1
            os.write(fd, f"begin {dst}\n".encode())
            if count[0] == kill_before:
                os.kill(os.getpid(), signal.SIGKILL)
            real(src, dst)
            os.write(fd, f"end {dst}\n".encode())
            if count[0] == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace
        self.fd = fd

    def done(self) -> None:
        os.write(self.fd, b"done\n")

    def lines(self) -> list[str]:
        return open(self.path).read().splitlines() if os.path.exists(self.path) else []


def _writer(root: str, kind: str, seed: int, ready, log_path: str,
            kill_before: int | None = None, kill_after: int | None = None) -> None:
    """Child: prepare, signal ready, write one commit, then wait to be killed.

    It never exits by itself: a kill that comes after the write finished shows as
    ``done`` in its rename log, not as a clean exit the parent could mistake for a kill.
    """
    log = _RenameLog(log_path)
    log.install(kill_before, kill_after)
    store = Store(root)
    payload = _payload(store, kind, seed)
    ready.set()
    store.write_commit(payload)
    log.done()
    time.sleep(120)
    os._exit(3)


def _check(root: str, old_head: str, seed: int, log: list[str]) -> str:
    """fsck clean; HEAD old before the branch ref's rename began, new once it ended."""
    with Store(root) as store, store.lock(wait=True, timeout=60):  # a killed writer's repack holds it until done
        assert store.fsck() == []
        head = store.head()
        branch = [line.split(" ", 1)[0] for line in log if "/refs/heads/" in line]
        if "end" in branch:
            assert head != old_head and store.read_commit(head).message == f"trial {seed}", log
        elif "begin" not in branch:
            assert head == old_head, log
        else:  # killed inside the ref's own rename: either, never anything else
            assert head == old_head or store.read_commit(head).message == f"trial {seed}"
        return head


def _run_child(root: str, kind: str, seed: int, delay: float | None, log_path: str,
               kill_before: int | None = None, kill_after: int | None = None) -> list[str]:
    """Run one writer, SIGKILL it after ``delay`` s (or let it kill itself at a rename); its rename log."""
    ready = FORK.Event()
    child = FORK.Process(target=_writer, args=(root, kind, seed, ready, log_path, kill_before, kill_after),
                         daemon=True)
    child.start()
    assert ready.wait(30)
    if delay is not None:
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    if child.exitcode is None:  # it finished the write without reaching its kill point
        child.kill()
        child.join(5)
        pytest.fail(f"writer was not killed where aimed: {_RenameLog(log_path).lines()}")
    assert child.exitcode == -signal.SIGKILL, f"writer exited with {child.exitcode}, not killed"
    return _RenameLog(log_path).lines()


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


def test_kill_at_random_moments_leaves_old_or_new_head(root, tmp_path):
    rnd = random.Random(1234)
    span = _write_time(root)
    mid_write = 0
    for trial in range(TRIALS):
        kind = ("edit", "revert", "squash")[trial % 3]
        with Store(root) as store:
            old = store.head()
        log = _run_child(root, kind, 1000 + trial, rnd.uniform(0, span), str(tmp_path / f"log{trial}"))
        _check(root, old, 1000 + trial, log)
        mid_write += "done" not in log
    print(f"{mid_write} of {TRIALS} kills landed mid-write")
    assert mid_write >= TRIALS // 2  # the kills test interrupted writes, not finished ones


def _renames(root: str, kind: str, seed: int, tmp_path) -> int:
    """How many atomic renames this write makes (run on a copy of the store)."""
    copy = tmp_path / f"copy-{kind}"
    shutil.copytree(root, copy)
    log, real = _RenameLog(str(tmp_path / f"count-{kind}")), os.replace
    try:
        log.install()
        with Store(copy) as store:
            store.write_commit(_payload(store, kind, seed))
    finally:
        os.replace = real
    return sum(line.startswith("begin ") for line in log.lines())


@pytest.mark.parametrize("kind", ["edit", "squash"])
def test_kill_around_each_rename(root, kind, tmp_path):
    """Die right before and right after every rename of the write but its last (all mid-write).

    Each kill point starts from a fresh copy of the same store, so the write makes the
    same renames in the same order every time (a content-addressed object already on disk
    is not written again, which would shift the count).
    """
    total = _renames(root, kind, 7, tmp_path)
    assert total >= 3  # an object, the branch ref and the HEAD cache at least
    points = [(n, None) for n in range(1, total + 1)] + [(None, n) for n in range(1, total)]
    for i, (before, after) in enumerate(points):
        trial = tmp_path / f"trial{i}"
        shutil.copytree(root, trial)
        with Store(trial) as store:
            old = store.head()
        log = _run_child(str(trial), kind, 7, None, str(tmp_path / f"log{i}"), kill_before=before, kill_after=after)
        assert "done" not in log
        assert sum(line.startswith("begin ") for line in log) == (before or after), log  # died where aimed
        if after is not None:
            assert log[-1].startswith("end "), log
        _check(str(trial), old, 7, log)
        with Store(trial) as store:  # the next writer sweeps the strays and succeeds
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

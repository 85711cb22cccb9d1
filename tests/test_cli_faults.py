"""Ctrl-C and crashes in ``kvc commit``, ``revert`` and ``squash``: the store is as it was,
or holds the complete new commit.

Each case copies one prepared project (a tiny Llama store with two edits and a third spec),
runs the real CLI entry point ``kedit_vc.cli.main.main`` in a child process of its own session
(``fault_child``), lets it stop at a named point (inside the editor, at the first scoring,
right before or after chosen atomic renames: the first and last git object, the branch ref,
the HEAD cache, score-cache entries; before ``git repack``), and delivers a
real signal: SIGINT to the child's process group, as a terminal's Ctrl-C does, or SIGKILL to
the child. Then:

* the exit status is what the CLI promises: 130 and ``aborted`` on stderr for SIGINT, -9
  for SIGKILL;
* the refs and the git objects reachable from them are exactly as before, unless the
  branch ref's rename had completed, in which case the branch holds one complete new
  commit on the old HEAD (a squash: its rewritten history, the old one kept reachable).
  One leftover is allowed: a squash stopped between its two ref writes keeps the
  ``refs/kvc/squashed/<HEAD>`` ref it wrote first, which points at HEAD itself;
* every file of the project outside git's own folder (spec files, delta objects, caches) is
  byte-identical to before, except the HEAD cache once the ref moved; what may be added is
  valid score-cache entries, content-addressed delta objects, and, after a SIGKILL only,
  a killed write's temporary file (swept from ``.kvc/tmp`` by the next writer; see
  ``_added_files_are_allowed``);
* ``kvc fsck`` is clean.

Children come from a forkserver that imported torch and kedit_vc once, so a case costs a
model load and one edit, not an interpreter start; one case runs the ``kvc`` module as a
fresh interpreter to show the entry point itself answers Ctrl-C with 130.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import run_kvc, write_spec
from test_cli_store import EIFFEL, FRANCE, TOKYO, ok

COMMIT = ("commit", "c.kedit", "-m", "faulted", "--no-progress")
REVERT = ("revert", "HEAD~1", "-m", "faulted", "--no-progress")
SQUASH = ("squash", "HEAD~2..HEAD", "-m", "faulted", "--allow-loss", "--hparam", "layers=[1,2]",
          "--hparam", "v_steps=3", "--hparam", "stats_tokens=2000", "--hparam", "context_templates=2",
          "--no-progress")
COMMANDS = {"commit": COMMIT, "revert": REVERT, "squash": SQUASH}
WAIT_S = 60.0


@pytest.fixture(scope="module")
def forkserver():
    """A forkserver that preloaded ``fault_child`` (torch, transformers, kedit_vc)."""
    from multiprocessing import forkserver as server

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["fault_child"])
    # The server imports its preloads before it applies the parent's sys.path (Python 3.11):
    # on PYTHONPATH, or every child imports torch and transformers itself (7 s each).
    tests = str(Path(__file__).parent)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(p for p in (tests, *sys.path) if p))
        server.ensure_running()
    return context


@pytest.fixture(scope="module")
def template(tmp_path_factory, tiny_model_dir, kvc_cache, stats_text):
    """A project with a store on the tiny Llama, two edit commits, and ``c.kedit`` to commit."""
    folder = tmp_path_factory.mktemp("fault-template") / "project"
    folder.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KVC_CACHE", str(kvc_cache))
        patch.setenv("KVC_STATS_TEXT", str(stats_text))
        patch.chdir(folder)
        ok(run_kvc("init", "--model", str(tiny_model_dir)))
        for name, body in (("a.kedit", EIFFEL), ("b.kedit", FRANCE)):
            ok(run_kvc("commit", str(write_spec(folder, name, body)), "--no-progress"))
        write_spec(folder, "c.kedit", TOKYO)
    return folder


def _env(kvc_cache: Path, stats_text: Path) -> dict[str, str]:
    return {"KVC_CACHE": str(kvc_cache), "KVC_STATS_TEXT": str(stats_text), "OMP_NUM_THREADS": "1",
            "COLUMNS": "160"}


# -- what the project holds -------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    refs: dict[str, str]         # HEAD's target and every ref -> sha
    reachable: frozenset[str]    # git objects reachable from the refs
    files: dict[str, str]        # project files outside repo.git and the lock -> sha256


def snapshot(project: Path) -> Snapshot:
    """The project's state, read under the writer lock (a killed writer's repack may hold it;
    taking it sweeps a killed write's temporary files from ``.kvc/tmp``, as any writer does)."""
    from kedit_vc.store import open_store

    with open_store(project) as store, store.lock(wait=True, timeout=WAIT_S):
        git = store.repo.git
        refs = dict(line.split(" ", 1)[::-1] for line in
                    git.for_each_ref("--format=%(objectname) %(refname)").splitlines())
        refs["HEAD"] = git.symbolic_ref("HEAD")
        reachable = frozenset(line.split(" ", 1)[0] for line in git.rev_list("--objects", "--all").splitlines())
    skip = {project / ".kvc" / "repo.git", project / ".kvc" / "lock"}
    files = {}
    for path in sorted(project.rglob("*")):
        if path.is_file() and not any(path == s or s in path.parents for s in skip):
            files[str(path.relative_to(project))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return Snapshot(refs, reachable, files)


def _added_files_are_allowed(project: Path, added: set[str], killed: bool) -> None:
    """New files may be: score-cache entries that parse (scores of states that exist), delta
    objects named by their content, and (SIGKILL only) a killed atomic write's temporary file
    beside a score-cache entry (outside ``.kvc/tmp``, so no writer sweeps it; it is never read)."""
    from kedit_vc.eval.scores import ProbeScores

    for name in added:
        path = project / name
        if name.startswith(".kvc/cache/scores/") and name.endswith(".json"):
            ProbeScores.loads(path.read_text(encoding="utf-8"))
        elif name.startswith(".kvc/cache/scores/") and name.endswith(".kvc-tmp"):
            assert killed, f"{name}: a Ctrl-C'd write must remove its temporary file"
        elif name.startswith(".kvc/objects/") and name.endswith(".safetensors"):
            from kedit_vc.delta import Delta

            Delta.from_bytes(path.read_bytes(), expected_hash=path.stem, source=name)  # raises unless it is
        else:
            raise AssertionError(f"{name} appeared in the project")


# -- one case ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    exitcode: int | None
    log: list[str]
    stdout: str
    stderr: str

    def moved(self) -> bool:
        """Did the branch ref's rename complete before the signal?"""
        return any(line.startswith("end ") and "/refs/heads/" in line for line in self.log)


def run_child(context, project: Path, argv, env, pause_at: str | None, sig: int | None) -> Outcome:
    """``kvc ARGV`` in ``project`` from the forkserver; stopped at ``pause_at`` and sent ``sig``."""
    log_path, out_path = project.parent / f"{project.name}.log", str(project.parent / project.name)
    import fault_child

    child = context.Process(target=fault_child.run, daemon=True,
                            args=(str(project), list(argv), env, str(log_path), out_path, pause_at))
    child.start()
    deadline = time.monotonic() + WAIT_S
    if pause_at is not None:
        while f"paused {pause_at}" not in _read(log_path):
            if not child.is_alive() or time.monotonic() > deadline:
                child.kill()
                child.join(5)
                pytest.fail(f"{pause_at} was never reached: {_read(log_path)}\n{_read(out_path + '.err')}")
            time.sleep(0.02)
        if sig == signal.SIGINT:
            os.killpg(child.pid, signal.SIGINT)  # the terminal's Ctrl-C: the whole foreground group
        else:
            os.kill(child.pid, signal.SIGKILL)
    child.join(WAIT_S)
    if child.exitcode is None:
        child.kill()
        child.join(5)
    return Outcome(child.exitcode, _read(log_path).splitlines(), _read(out_path + ".out"), _read(out_path + ".err"))


def _read(path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def check_outcome(project: Path, before: Snapshot, outcome: Outcome, command: str, sig: int,
                  full_fsck: bool = False) -> str:
    """Assert the exit status and the store's state; returns "old" or "new"."""
    where = f"{command} {outcome.log[-3:]}"
    if sig == signal.SIGINT:
        assert outcome.exitcode == 130, (where, outcome.exitcode, outcome.stderr)
        assert outcome.stderr.strip().splitlines()[-1] == "aborted", outcome.stderr
        assert "Traceback" not in outcome.stderr, outcome.stderr
    else:
        assert outcome.exitcode == -signal.SIGKILL, (where, outcome.exitcode, outcome.stderr)
    after = snapshot(project)
    branch = before.refs["HEAD"]
    if outcome.moved():
        state = "new"
        from kedit_vc.store import open_store

        with open_store(project) as store:
            head = store.read_commit(after.refs[branch])
            assert head.message == "faulted" and head.op == command.replace("commit", "edit"), where
            if command != "squash":
                assert head.parents == (before.refs[branch],), where
            else:
                assert store.squashed_refs() == {f"refs/kvc/squashed/{before.refs[branch]}": before.refs[branch]}
        expected_refs = {k: v for k, v in after.refs.items() if k != branch and k not in before.refs}
        assert {**before.refs, **expected_refs, branch: after.refs[branch]} == after.refs, where
        assert before.reachable < after.reachable, where
        changed = {n for n in before.files if before.files[n] != after.files.get(n)} - {".kvc/cache/head.safetensors"}
    else:
        state = "old"
        kept = {k: v for k, v in after.refs.items() if k not in before.refs}
        if command == "squash" and kept:  # its kept-history ref is written before the branch ref moves;
            old = before.refs[branch]     # named after and pointing at the old HEAD, it adds nothing reachable
            assert kept == {f"refs/kvc/squashed/{old}": old}, where
        assert {**after.refs, **{k: v for k, v in before.refs.items() if k not in after.refs}} == \
            {**before.refs, **kept} and after.refs.keys() >= before.refs.keys(), where
        assert after.reachable == before.reachable, where
        changed = {n for n in before.files if before.files[n] != after.files.get(n)}
    assert not changed, (where, changed)
    _added_files_are_allowed(project, set(after.files) - set(before.files), killed=sig == signal.SIGKILL)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)  # the model is not touched by a write: its fingerprint is checked once, below
        assert ok(run_kvc("fsck", *([] if full_fsck else ["--skip-model"]))).startswith("ok"), where
    return state


def points_of(context, template: Path, folder: Path, command: str, env) -> list[str]:
    """The named points an uninterrupted run of ``command`` passes, in order (it must succeed)."""
    project = folder / f"{command}-plain" / "project"
    shutil.copytree(template, project)
    outcome = run_child(context, project, COMMANDS[command], env, None, None)
    assert outcome.exitcode == 0, outcome.stderr
    return [line.split(" ", 1)[1] for line in outcome.log if line.startswith("at ")]


#: (point, signal) per command; ``last-KIND`` is that kind's last rename in the plain run.
INT, KILL = signal.SIGINT, signal.SIGKILL
CASES = {
    "commit": [("edit", INT), ("edit", KILL), ("score", KILL), ("scores1:before", KILL), ("git-object1:after", INT),
               ("last-git-object:after", KILL), ("ref1:before", INT), ("ref1:before", KILL), ("ref1:after", INT),
               ("ref1:after", KILL), ("head-cache1:before", KILL), ("pack", INT), ("pack", KILL),
               ("last-scores:before", INT)],
    "revert": [("score", INT), ("git-object1:before", KILL), ("ref1:before", INT), ("ref1:after", KILL),
               ("head-cache1:after", INT), ("pack", KILL)],
    "squash": [("edit", INT), ("score", KILL), ("last-git-object:after", INT), ("other-ref1:after", KILL),
               ("ref1:before", KILL), ("ref1:after", INT), ("pack", KILL)],
}


def _resolve(point: str, points: list[str]) -> str:
    """``last-KIND:WHEN`` -> ``KINDk:WHEN`` for the largest k the plain run passed."""
    if not point.startswith("last-"):
        return point
    kind, _, when = point.removeprefix("last-").partition(":")
    numbers = [int(m.group(1)) for p in points if (m := re.fullmatch(rf"{re.escape(kind)}(\d+):{when}", p))]
    assert numbers, (point, points)
    return f"{kind}{max(numbers)}:{when}"


@pytest.mark.parametrize("command", ["commit", "revert", "squash"])
def test_ctrl_c_or_kill_anywhere_leaves_the_store_as_it_was_or_committed(
        forkserver, template, tmp_path, command, kvc_cache, stats_text):
    env = _env(kvc_cache, stats_text)
    points = points_of(forkserver, template, tmp_path, command, env)
    states = {}
    for i, (name, sig) in enumerate(CASES[command]):
        point = _resolve(name, points)
        assert point in points, (point, points)
        project = tmp_path / f"case{i}" / "project"
        shutil.copytree(template, project)
        before = snapshot(project)
        outcome = run_child(forkserver, project, COMMANDS[command], env, point, sig)
        state = check_outcome(project, before, outcome, command, sig)
        # the branch ref's rename divides the points: before it the old store, after it the new commit
        assert state == ("new" if points.index(point) >= points.index("ref1:after") else "old"), point
        states[(point, signal.Signals(sig).name)] = state
    assert set(states.values()) == {"old", "new"}, states
    print(f"{command}: {len(states)} cases, {list(states.values()).count('old')} left the old store")


def test_the_kvc_entry_point_exits_130_on_ctrl_c(template, tmp_path, kvc_cache, stats_text):
    """A fresh interpreter running ``kvc commit``, Ctrl-C'd right before the branch ref moves."""
    project = tmp_path / "fresh" / "project"
    shutil.copytree(template, project)
    before = snapshot(project)
    log_path, out_path = tmp_path / "fresh" / "project.log", str(tmp_path / "fresh" / "project")
    # A terminal's foreground job has the default SIGINT handler; a job started in the
    # background of a non-interactive shell (as CI may run us) inherits SIGINT ignored.
    bootstrap = ("import signal, sys, fault_child; signal.signal(signal.SIGINT, signal.default_int_handler); "
                 "fault_child.install(fault_child._Log(sys.argv[1], sys.argv[2])); "
                 "fault_child.kedit_vc.cli.main.main(sys.argv[3:])")
    path = os.pathsep.join(p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, **_env(kvc_cache, stats_text), "PYTHONPATH": path}
    with open(out_path + ".out", "w") as out, open(out_path + ".err", "w") as err:
        child = subprocess.Popen([sys.executable, "-c", bootstrap, str(log_path), "ref1:before", *COMMIT],
                                 cwd=project, env=env, stdout=out, stderr=err, start_new_session=True)
        try:
            deadline = time.monotonic() + 2 * WAIT_S
            while "paused ref1:before" not in _read(log_path):
                assert child.poll() is None and time.monotonic() < deadline, (_read(log_path), _read(out_path + ".err"))
                time.sleep(0.05)
            os.killpg(child.pid, signal.SIGINT)
            child.wait(WAIT_S)
        finally:
            if child.poll() is None:
                child.kill()
    outcome = Outcome(child.returncode, _read(log_path).splitlines(), _read(out_path + ".out"),
                      _read(out_path + ".err"))
    assert check_outcome(project, before, outcome, "commit", signal.SIGINT, full_fsck=True) == "old"

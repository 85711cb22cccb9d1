"""The child side of the CLI fault tests: ``kvc``'s own ``main`` with named pause points.

A test starts ``run`` in a process of its own session (so a Ctrl-C, sent to the process
group as a terminal does, reaches ``git repack`` too), and reads the child's log:

* ``at POINT`` each time a point is passed; ``paused POINT`` when the child stops there
  and waits (60 s) for the parent's SIGINT or SIGKILL;
* the points: ``edit`` (inside the editor), ``score`` (the first probe scoring after the
  model was loaded), ``KINDk:before`` / ``KINDk:after`` around the k-th atomic rename of
  one kind of file (``os.replace`` and gitdb's loose-object rename; kinds in
  ``rename_kind``: ``ref1`` is the branch ref, ``git-object3`` the third git object), with
  ``begin N DST`` / ``end N DST`` lines, and ``pack`` (right before ``git repack``).

Nothing here is in the package: the hooks wrap functions from outside, in the child only.
The log is written unbuffered, so a SIGKILL cannot lose a line. The heavy imports happen
at import time, so a forkserver that preloads this module starts children at once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any, Callable, Sequence

import gitdb.db.loose
import torch  # noqa: F401 - preloaded for the forkserver's children
import transformers.models.llama.modeling_llama  # noqa: F401 - transformers imports lazily: 5 s a child
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast  # noqa: F401

import kedit_vc.cli.main
import kedit_vc.models.families  # noqa: F401
import kedit_vc.models.loading  # noqa: F401
import kedit_vc.ops.commit  # noqa: F401
import kedit_vc.ops.revert  # noqa: F401
import kedit_vc.ops.squash  # noqa: F401
from kedit_vc.editors.memit.algorithm import MemitEditor
from kedit_vc.editors.rome.algorithm import RomeEditor
from kedit_vc.ops.evaluate import Evaluator
from kedit_vc.store import gitio

PAUSE_S = 60.0


class _Log:
    def __init__(self, path: str, pause_at: str | None) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.pause_at = pause_at
        self.renames = 0
        self.kinds: dict[str, int] = {}

    def note(self, line: str) -> None:
        os.write(self.fd, f"{line}\n".encode())

    def point(self, name: str) -> None:
        self.note(f"at {name}")
        if name == self.pause_at:
            self.note(f"paused {name}")
            time.sleep(PAUSE_S)  # the parent's signal lands here
            self.note(f"not signalled at {name}")
            os._exit(4)


def rename_kind(dst: str) -> str:
    """What a rename writes, by where it goes: a point name that does not shift when another
    kind of file (e.g. the statistics cache, written once per layer) is renamed or not."""
    for marker, kind in (("/refs/heads/", "ref"), ("/refs/", "other-ref"), ("/repo.git/objects/", "git-object"),
                         ("/.kvc/objects/", "delta-object"), ("/.kvc/cache/scores/", "scores"),
                         ("/.kvc/cache/head", "head-cache")):
        if marker in dst:
            return kind
    return "other"


def _wrap_rename(log: _Log, real: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    def rename(src: Any, dst: Any) -> None:
        kind = rename_kind(str(dst))
        log.renames += 1
        log.kinds[kind] = k = log.kinds.get(kind, 0) + 1
        log.note(f"begin {log.renames} {dst}")
        log.point(f"{kind}{k}:before")
        real(src, dst)
        log.note(f"end {log.renames} {dst}")
        log.point(f"{kind}{k}:after")

    return rename


def _wrap(log: _Log, name: str, real: Callable[..., Any], once: bool = False) -> Callable[..., Any]:
    passed = [False]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not (once and passed[0]):
            passed[0] = True
            log.point(name)
        return real(*args, **kwargs)

    return wrapper


def install(log: _Log) -> None:
    """Hook the named points into this process (the child's copy of the modules)."""
    os.replace = _wrap_rename(log, os.replace)  # type: ignore[assignment]
    gitdb.db.loose.rename = _wrap_rename(log, gitdb.db.loose.rename)  # type: ignore[attr-defined]
    RomeEditor.edit = _wrap(log, "edit", RomeEditor.edit)  # type: ignore[method-assign]
    MemitEditor.edit = _wrap(log, "edit", MemitEditor.edit)  # type: ignore[method-assign]
    Evaluator.score_now = _wrap(log, "score", Evaluator.score_now, once=True)  # type: ignore[method-assign]
    gitio.pack = _wrap(log, "pack", gitio.pack)  # type: ignore[assignment]


def run(project: str, argv: Sequence[str], env: dict[str, str], log_path: str, out_path: str,
        pause_at: str | None) -> None:
    """Be ``kvc ARGV`` run in ``project`` from a terminal: own session, default SIGINT handler,
    stdout and stderr to ``out_path`` (.out / .err); exits as ``kvc`` does."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(project)
    os.environ.update(env)
    for fd, suffix in ((1, ".out"), (2, ".err")):
        target = os.open(out_path + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    log = _Log(log_path, pause_at)
    install(log)
    log.note("start")
    try:
        kedit_vc.cli.main.main(list(argv))
    finally:
        log.note("exit")
        sys.stdout.flush()
        sys.stderr.flush()

"""Deliberately broken builds: does the fast suite go red for each?

Five mutants of core logic, and two from issue 23's list (a lock that is not exclusive, an
export that drops an update).

Each mutant changes one line of core code (exact text, found once), in a copy of the
package, and runs the fast test files that should notice (``-m "not slow"``, stop at the
first failure). A mutant is *caught* when pytest fails; the first failing test is recorded.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python bench/mutants.py   # -> bench/results/mutants.json
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (name, file, original line text, mutated text, test files that should catch it)
MUTANTS = [
    ("delta apply sign", "kedit_vc/ops/weights.py",
     "param.data = self._saved[name] + value", "param.data = self._saved[name] - value",
     ["tests/test_ops.py", "tests/test_cli_store_export.py"]),
    ("revert keeps the edit (no inverse)", "kedit_vc/store/rewrite.py",
     "inverse = target_delta.inverse()", "inverse = target_delta",
     ["tests/test_store.py", "tests/test_store_history.py"]),
    ("locality counts disagreements", "kedit_vc/eval/registry.py",
     "out.append(sum(x == y for x, y in zip(a.argmax_ids, b.argmax_ids)) / len(a.argmax_ids))",
     "out.append(sum(x != y for x, y in zip(a.argmax_ids, b.argmax_ids)) / len(a.argmax_ids))",
     ["tests/test_eval_metrics.py"]),
    ("gate's >= becomes >", "kedit_vc/compiler/plan.py",
     'return {">=": value >= self.threshold,', 'return {">=": value > self.threshold,',
     ["tests/test_eval_gate.py", "tests/test_compiler.py"]),
    ("delta hash check skipped", "kedit_vc/delta/io.py",
     "if expected_hash is not None and actual != expected_hash:",
     "if False and expected_hash is not None and actual != expected_hash:",
     ["tests/test_delta_io.py", "tests/test_store.py"]),
    # two more from issue 23's list: a store write without the lock, an export that drops an update
    ("writer lock shared, not exclusive", "kedit_vc/store/lock.py",
     "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", "fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)",
     ["tests/test_store.py", "tests/test_store_faults.py"]),
    ("peft export drops each delta's first update", "kedit_vc/ops/export.py",
     "for name, update in delta.updates.items():", "for name, update in list(delta.updates.items())[1:]:",
     ["tests/test_cli_store_export.py", "tests/test_export_props.py"]),
]


def run_mutant(name: str, file: str, old: str, new: str, tests: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="kvc-mutant-") as folder:
        copy = Path(folder)
        for part in ("kedit_vc", "tests", "grammar", "specs", "pyproject.toml"):
            source = ROOT / part
            if source.is_dir():
                shutil.copytree(source, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
            elif source.exists():
                shutil.copy(source, copy / part)
        target = copy / file
        text = target.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{name}: {old!r} found {text.count(old)} times in {file}"
        target.write_text(text.replace(old, new), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1"}
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m",
                               "not slow", *tests], cwd=copy, env=env, capture_output=True, text=True)
        failed = re.findall(r"^FAILED (\S+)", done.stdout, re.M)
    return {"mutant": name, "file": file, "line": old, "mutated": new, "tests": tests,
            "caught": done.returncode != 0, "pytest_rc": done.returncode, "caught_by": failed[:3],
            "seconds": round(time.monotonic() - started, 1),
            "tail": done.stdout.strip().splitlines()[-1:]}


def main() -> int:
    rows = [run_mutant(*mutant) for mutant in MUTANTS]
    for row in rows:
        print(f"{'caught' if row['caught'] else 'MISSED':7} {row['mutant']:38} {row['caught_by'][:1]} "
              f"({row['seconds']} s)", flush=True)
    out = ROOT / "bench" / "results" / "mutants.json"
    out.write_text(json.dumps({"mutants": rows, "caught": sum(r["caught"] for r in rows), "of": len(rows)},
                              indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0 if all(r["caught"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

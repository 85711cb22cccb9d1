"""Shared plumbing for bench scripts: machine facts, result files, memory and tables.

Every script builds its parser with ``parser()`` (``--model``, ``--threads``,
``--results-dir``), calls ``setup(args)`` first, prints a table with ``table`` and
writes ``<results-dir>/<name>.json`` with ``save`` (machine facts, date, thread count).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import re
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    from kedit_vc.eval.efficiency import machine_facts

    return machine_facts()


def save(name: str, payload: dict[str, Any], directory: str | os.PathLike[str] | None = None) -> Path:
    """Write ``<directory or bench/results>/<name>.json`` with machine info, sorted keys."""
    folder = Path(directory) if directory is not None else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, sort_keys=True) + "\n")
    return path


def profile_rows(profiler: cProfile.Profile, top: int = 25, by: str = "cumulative_s") -> list[dict[str, Any]]:
    """The ``top`` functions by ``by`` ("cumulative_s", or "own_s" for the leaves the cumulative
    list hides): name, calls, own and cumulative seconds."""
    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, func), (_, calls, own, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}({func})", "calls": calls,
                     "own_s": round(own, 3), "cumulative_s": round(cum, 3)})
    return sorted(rows, key=lambda r: -r[by])[:top]


# -- command line ----------------------------------------------------------------------

def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argparse parser with the options every bench script shares."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2", help="model reference: alias or HF folder (default smollm2)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")),
                   help="torch threads (default $OMP_NUM_THREADS or 1; recorded in the results)")
    p.add_argument("--results-dir", default=None, help="where to write <name>.json (default bench/results)")
    return p


def hparam_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["nas=true", "layers=[2,3]"]`` (``--hparam NAME=VALUE``, JSON values) -> overrides."""
    return {k: json.loads(v) for k, v in (item.split("=", 1) for item in items)}


def setup(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (one thread per process is fastest on a shared CPU)."""
    import torch

    torch.set_num_threads(max(1, args.threads))


def ints(text: str) -> list[int]:
    """``"1,10,100"`` -> [1, 10, 100]."""
    return [int(x) for x in text.split(",") if x.strip()]


# -- time and memory -------------------------------------------------------------------

@contextmanager
def timer() -> Iterator[dict[str, float]]:
    """``with timer() as t: ...`` then ``t["s"]`` holds the elapsed seconds."""
    out: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["s"] = time.perf_counter() - start


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def _status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) if found else None


def rss_bytes() -> int | None:
    """Resident set size now (Linux /proc; None elsewhere)."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> int:
    """Peak resident set size since the process started or the last ``reset_peak_rss``."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the peak to the current RSS (Linux: ``5`` into /proc/self/clear_refs).

    Returns False where unsupported; the peak then covers the whole process so far.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def mib(n: float | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


# -- output ----------------------------------------------------------------------------

def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; floats get 3 significant figures."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def unscored(request: Any, neighbours: int) -> Any:
    """What the editor is given: the request with only the neighbourhood prompts that are not
    scored (CounterFact has 10; the first ``neighbours`` are scored), so an editor that trains
    against declared neighbours (WISE's irrelevant inputs) never sees a scored one."""
    from kedit_vc.ops.bench import split_neighbours

    declared = sum(p.kind == "neighbour" for p in request.probes)
    return split_neighbours(request, declared - neighbours)[1]


def tokens_per_second(model: Any, tokenizer: Any, prompts: list[str], tokens: int) -> float:
    """Greedy generation speed: ``tokens`` new tokens (no early stop) per prompt."""
    import torch

    from kedit_vc.models.prompting import encode_text, pad_id

    total, seconds = 0, 0.0
    for prompt in prompts:
        ids = torch.tensor([encode_text(tokenizer, prompt)])
        began = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                                 min_new_tokens=tokens, do_sample=False, pad_token_id=pad_id(tokenizer))
        seconds += time.perf_counter() - began
        total += out.shape[1] - ids.shape[1]
    return total / seconds


def generate_speed(lm: Any, side: Any, requests: Sequence[Any], tokens: int) -> dict[str, Any]:
    """Greedy tokens/s on the first five ``requests``' rewrite prompts with the patches attached
    to ``side`` live, then detached (the plain model); the patches are live again after."""
    prompts = [r.prompt.replace("{}", r.subject, 1) for r in requests[:5]]
    live = tokens_per_second(lm.model, lm.tokenizer, prompts, tokens)
    patches = list(side.patches)
    side.clear()
    plain = tokens_per_second(lm.model, lm.tokenizer, prompts, tokens)
    side.set(patches)
    return {"plain_tokens_per_s": round(plain, 2), "live_tokens_per_s": round(live, 2), "ratio": round(live / plain, 3)}


def saved_patches(saved: Path, commits: int) -> list[Any]:
    """The side patches (codebooks, side memories, neurons) of the first ``commits`` commits a
    ``sequential.py`` run saved in its ``<name>.deltas/`` folder, decoded in commit order."""
    from kedit_vc.patches.registry import require_kind

    state = json.loads((saved / "state.json").read_text())
    if state["commits"] < commits:
        raise SystemExit(f"{saved}: the run saved {state['commits']} commits, fewer than the {commits} asked for")
    return [require_kind(kind).decode((saved / name).read_bytes(), None, str(saved / name))
            for k in range(commits) for name, kind in state.get("patches", {}).get(str(k), [])]

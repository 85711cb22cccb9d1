"""Print the "Performance" and "Editing quality" tables from bench/results/*.json.

Performance: one row per headline figure: what was measured, its baseline from the same
run, the ratio, the target and whether it was met, with each file's date, machine and
torch thread count. Editing quality: every ``kvc bench --json`` result (files named
``<benchmark><n>_<method>.json``) and every sequential run, pre-edit values beside
post-edit ones. Files this script does not know are listed by name only.

    python bench/report.py > /tmp/perf.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Iterator

from common import RESULTS

Row = tuple[str, str, str, str, str, str]


def _s(x: float) -> str:
    if x < 0.1:
        return f"{x * 1000:.3g} ms"
    return f"{x:.3g} s" if x < 100 else f"{x:.0f} s"


def _b(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def _ok(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "**missed**")


def rome_latency(r: dict[str, Any]) -> Iterator[Row]:
    m, ratio = r["median_seconds"], r["ratios"]["kvu_over_floor"]
    yield (f"ROME edit, median of {r['n']} (key+value+update)", _s(m["kvu_s"]),
           f"{_s(m['floor_s'])} floor (same passes, plain forward)", f"{ratio:.2f}x",
           f"<= {r['target_ratio']}x", _ok(r["target_met"]))


def memit_scaling(r: dict[str, Any]) -> Iterator[Row]:
    done = [x for x in r["rows"] if "seconds" in x]
    single = next(x for x in done if x["n"] == 1)
    top = max(done, key=lambda x: x["n"])
    steps = r["hparams"]["v_steps"]
    yield (f"MEMIT {top['n']} edits/batch ({steps} steps), per edit", _s(top["seconds_per_edit"]),
           f"{_s(single['seconds_per_edit'])} single edit", f"{top['per_edit_over_single']:.2f}x",
           "<= 0.2x at 500", _ok(r["target_met"]) + ("" if top["n"] >= 500 else f" (at {top['n']})"))
    yield (f"MEMIT {top['n']} edits/batch, peak RSS", _b(top["peak_rss_bytes"]), "", "", "", "")


def storage(r: dict[str, Any]) -> Iterator[Row]:
    rome = next((label, m) for label, m in r["methods"].items() if "rank 1)" in label)
    yield (f"{rome[0]}: delta file", _b(rome[1]["delta_file_bytes"]), f"{_b(rome[1]['dense_bytes'])} dense",
           f"{rome[1]['ratio_file']:.3g}x smaller", ">= 200x", _ok(rome[1]["ratio_file"] >= r["target_ratio"]))
    for label, m in r["methods"].items():
        rank_one = "rank 1)" in label
        yield (f"{label}: one commit on disk (mean of {m['commits']}, as written)",
               f"{_b(m['commit_disk_bytes'])} (first: {_b(m['first_commit_disk_bytes'])}; "
               f"loose: {_b(m['loose_commit_disk_bytes'])})",
               f"{_b(m['dense_bytes'])} dense", f"{m['ratio_commit_disk']:.3g}x smaller",
               ">= 200x (rank one)" if rank_one else "",
               _ok(m["ratio_commit_disk"] >= r["target_ratio"]) if rank_one else "")
    h = r["history"]
    names = {"packed": "as written: packed", "loose": "packing off: loose objects",
             "loose_after_git_gc": "packing off, then git gc"}
    for state, name in names.items():
        yield (f"store after {h['commits']} ROME commits ({name})", _b(h[state]["disk"]),
               f"{_b(h['dense_equivalent_bytes'])} dense", f"{h[state]['ratio_dense_over_disk']:.3g}x smaller",
               ">= 200x" if state == "packed" else "",
               _ok(h[state]["ratio_dense_over_disk"] >= r["target_ratio"]) if state == "packed" else "")
    yield (f"HEAD cache beside those {h['commits']} commits", _b(h["cache_disk"]),
           "at most one dense matrix per touched parameter", "", "", "")
    yield ("store write per ROME commit (packing included)", _s(h["packed"]["write_seconds_per_commit"]),
           f"{_s(h['loose']['write_seconds_per_commit'])} packing off", "", "", "")


def checkout(r: dict[str, Any]) -> Iterator[Row]:
    for row in r["rows"]:
        top = row is r["rows"][-1]
        if "checkout_overhead_s" in row:
            measured = f"load + {_s(row['checkout_overhead_s'])}"
            baseline = (f"{_s(row['plain_load_s'])} plain load; no cache: load + {_s(row['uncached_overhead_s'])} "
                        f"({row['uncached_over_load']:.2f}x); naive {row['naive_over_load']:.2f}x")
        else:
            measured = _s(row["checkout"]["total"])
            baseline = f"{_s(row['plain_load_s'])} plain load; naive {_s(row['naive']['total'])}"
        yield (f"checkout HEAD after {row['commits']} commits", measured, baseline,
               f"{row['checkout_over_load']:.2f}x", f"<= {r['targets']['checkout_over_load']}x" if top else "",
               _ok(r["targets"]["checkout_met"]) if top else "")
    if r.get("revert"):
        v = r["revert"]
        yield (f"revert commit {v['reverted']} of {v['history']}", _s(v["write_s"]),
               f"+ {_s(v['rematerialize_s'])} to re-materialise", "", f"<= {r['targets']['revert_write_s']} s",
               _ok(r["targets"]["revert_met"]))
    split = r.get("write_split_seconds_per_commit")
    if split:
        yield (f"store write per commit, {r['rows'][-1]['commits']}-commit history", _s(r["write_seconds_per_commit"]),
               f"of which HEAD cache {_s(split['head_cache'])}, packing {_s(split['pack'])}", "", "", "")


def stats_throughput(r: dict[str, Any]) -> Iterator[Row]:
    one, sep = r["one_pass"], r["separate_passes"]
    yield (f"key statistics, {len(r['layers'])} layers x {r['tokens']} tokens, one pass",
           f"{_s(one['seconds'])} ({one['tokens_per_second']:.0f} tok/s)", f"{_s(sep['seconds'])} one pass per layer",
           f"{r['speedup']:.2f}x faster", "", "")


def memory(r: dict[str, Any]) -> Iterator[Row]:
    yield ("ROME edit, peak RSS", _b(r["rome"]["peak_rss_bytes"]), f"{_b(r['baseline_rss_bytes'])} model loaded",
           "", "<= 2 GiB", _ok(r["rome_target_met"]))
    for m in r["memit"]:
        if "seconds" in m:
            yield (f"MEMIT {m['n']} edits, peak RSS", _b(m["peak_rss_bytes"]), "", "", "", "")
        else:
            yield (f"MEMIT {m['n']} edits, peak RSS", f"not run: ~{_b(m['projected_growth_bytes'])} projected",
                   f"{_b(m['available_bytes'])} available", "", "", "")


def targets_speed(r: dict[str, Any]) -> Iterator[Row]:
    """Per run (dev or report records): the new settings' CPU seconds per fact against
    ``old`` (whole prompts every target step) and their quality side by side."""
    olds = {(run["method"], run["start"], run["n"]): x for run in r["runs"].values()
            for x in run["rows"] if x["setting"] == "old"}
    for tag, run in r["runs"].items():
        rows = {x["setting"]: x for x in run["rows"]}
        old = rows.get("old") or olds.get((run["method"], run["start"], run["n"]))  # a run beside it
        where = f"{run['n']} facts, records {run['start']}..{run['start'] + run['n'] - 1} ({tag})"
        for name, row in rows.items():
            if name == "old" or old is None:
                continue
            ratio = row["cpu_seconds_per_fact"] / old["cpu_seconds_per_fact"]
            quality = lambda x: "/".join(f"{x['post'][m]:.2f}" if x["post"].get(m) is not None else "-"  # noqa: E731
                                         for m in ("reliability_cf", "generalization_cf", "locality_cf",
                                                   "raw_reliability_cf", "gen_reliability", "raw_gen_reliability"))
            lower = [m for m, v in row["post"].items() if v is not None and old["post"].get(m) is not None
                     and v < old["post"][m] - 1e-9]
            setting = ",".join(f"{k}={v}" for k, v in row["overrides"].items()) or "defaults"
            yield (f"{run['method'].upper()} targets `{name}` ({setting}), {where}, CPU s per fact; "
                   "quality eff/para/neigh/raw eff/gen/raw gen", f"{_s(row['cpu_seconds_per_fact'])}; {quality(row)}",
                   f"{_s(old['cpu_seconds_per_fact'])} old; {quality(old)}", f"{ratio:.2f}x",
                   "<= 0.4x, equal quality",
                   _ok(ratio <= 0.4 and not lower) + (f" (lower: {', '.join(lower)})" if lower else ""))


KNOWN: dict[str, Callable[[dict[str, Any]], Iterator[Row]]] = {
    "targets_speed": targets_speed,
    "rome_latency": rome_latency, "memit_scaling": memit_scaling, "storage": storage, "checkout": checkout,
    "stats_throughput": stats_throughput, "memory": memory,
}


#: Reference metrics of each benchmark, as (column label, registered metric name).
QUALITY_COLUMNS = {
    "counterfact": (("efficacy", "reliability_cf"), ("paraphrase", "generalization_cf"),
                    ("neighbourhood", "locality_cf")),
    "zsre": (("reliability (acc)", "reliability_acc"), ("generalization (acc)", "generalization_acc"),
             ("locality (agree)", "locality_agree"), ("portability (acc)", "portability_acc")),
    "mquake": (("multi-hop", "portability_multihop"), ("reliability (acc)", "reliability_acc"),
               ("efficacy", "reliability_cf")),
}


def _pp(pre: float | None, post: float | None) -> str:
    if post is None:
        return "-"
    return f"{post:.3f}" if pre is None else f"{post:.3f} ({pre:.3f})"


def bench_row(r: dict[str, Any], stem: str = "") -> str:
    """One ``kvc bench --json`` result as a markdown row: post (pre) per reference metric.

    A file named ``<benchmark><n>_<method>_<variant>.json`` has its variant (a setting
    other than the defaults) named beside the method.
    """
    metrics, pre = r["report"]["metrics"], r["report"]["pre_metrics"]
    mode = "sequential" if r["sequential"] else ("one batch" if r["batch"] >= r["n_cases"] else f"batch {r['batch']}")
    variant = stem.split(f"_{r['method']}_", 1)[1] if f"_{r['method']}_" in stem else ""
    mode += f", {variant}" if variant else ""
    cells = "; ".join(f"{label} {_pp(pre.get(name), metrics.get(name))}"
                      for label, name in QUALITY_COLUMNS[r["benchmark"]] if name in metrics)
    per_edit = r.get("median_edit_seconds")
    timing = f"median {_s(per_edit)}/call" if per_edit else f"mean {_s(r['edit_seconds'] / max(1, r['n_cases']))}/edit"
    threads = r.get("run", {}).get("threads", 1)
    return (f"| {r['benchmark']} first {r['n_cases']} | {r['method']} ({mode}) | {cells} | {timing}, "
            f"{threads} thread(s) | {_b(r['peak_rss_bytes'])} |")


def _commits(r: dict[str, Any]) -> str:
    """How a sequential run committed its edits."""
    return "one commit each" if r.get("batch", 1) == 1 else f"commits of {r['batch']}"


def sequential_row(r: dict[str, Any]) -> str:
    last = r["curve"][-1]
    cells = "; ".join(f"{label} {_pp(last['pre'].get(name), last.get(name))}"
                      for label, name in QUALITY_COLUMNS["counterfact"])
    data = "counterfact5k (flat)" if r.get("benchmark") == "counterfact5k" else "counterfact"
    done = "" if r.get("complete", True) else f" (stopped after {last['edits']})"
    return (f"| {data} first {r['n']}{done}, {_commits(r)} | {r['method']} (sequential, history-aware) | "
            f"{cells} | {_s(r['seconds_per_commit'])}/commit | |")


def sequential_curves(folder: Path) -> str:
    """Every sequential run's curve as one table: a row per method and metric, a column per
    evaluation (edits so far), the pre-edit values of the same records first."""
    runs = [json.loads(path.read_text()) for path in sorted(folder.glob("sequential_*.json"))]
    runs = [r for r in runs if r.get("curve")]
    if not runs:
        return ""
    points = sorted({row["edits"] for r in runs for row in r["curve"]})
    lines = ["| method | metric | " + " | ".join(f"{n} edits" for n in points) + " |",
             "|---|---|" + "---|" * len(points)]

    def cells(curve: list[dict[str, Any]], read: Callable[[dict[str, Any]], float | None]) -> str:
        by_edits = {row["edits"]: read(row) for row in curve}
        return " | ".join("-" if by_edits.get(n) is None else f"{by_edits[n]:.3f}" for n in points)

    longest = max(runs, key=lambda r: len(r["curve"]))
    for label, name in QUALITY_COLUMNS["counterfact"]:
        lines.append(f"| pre-edit | {label} | {cells(longest['curve'], lambda row, name=name: row['pre'].get(name))} |")
    for r in runs:
        mode = "" if r.get("batch", 1) == 1 else f", {_commits(r)}"
        for label, name in QUALITY_COLUMNS["counterfact"]:
            scores = cells(r["curve"], lambda row, name=name: row.get(name))
            lines.append(f"| {r['method']}{mode} | {label} | {scores} |")
    return "\n".join(lines)


def quality(folder: Path) -> str:
    """The editing-quality table: post-edit (pre-edit) values of every benchmark result."""
    lines = ["| records | method | post-edit (pre-edit) | time | peak RSS |", "|---|---|---|---|---|"]
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("benchmark") in QUALITY_COLUMNS and "report" in data:
            lines.append(bench_row(data, path.stem))
        elif path.stem.startswith("sequential_") and data.get("curve"):
            lines.append(sequential_row(data))
    return "\n".join(lines)


def report(folder: Path) -> str:
    lines = ["| benchmark | measured | baseline (same run) | ratio | target | status |",
             "|---|---|---|---|---|---|"]
    machines: dict[str, list[str]] = {}
    others = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        make = KNOWN.get(path.stem)
        if make is None and (data.get("benchmark") in QUALITY_COLUMNS or path.stem.startswith("sequential_")):
            continue  # in the quality table
        if make is None:
            others.append(path.name)
            continue
        try:
            rows = list(make(data))
        except (KeyError, StopIteration, ValueError) as error:
            rows = [(path.stem, f"unreadable result ({error!r})", "", "", "", "")]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        m = data.get("machine", {})
        key = f"{m.get('platform', '?')}, {m.get('cpus', '?')} CPUs, torch {m.get('torch', '?')}, " \
              f"{m.get('threads', '?')} thread(s)"
        machines.setdefault(key, []).append(f"{path.stem} {str(m.get('date', '?'))[:16]}")
    lines.append("")
    for key, names in machines.items():
        lines.append(f"Measured on {key} (load average shown in each file): {'; '.join(names)}.")
    if others:
        lines.append(f"Other results: {', '.join(others)}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    folder = Path(args.results_dir)
    text = report(folder) + "\n\nEditing quality:\n\n" + quality(folder)
    curves = sequential_curves(folder)
    if curves:
        text += "\n\nSequential editing (all edits so far, after each evaluation):\n\n" + curves
    print(text)
    return text


if __name__ == "__main__":
    main()

"""WISE before and after the routing fix, side by side, from two ``grace_sequential.py`` runs.

Both runs edit the same CounterFact records one commit at a time with the same settings
(``--method wise --every 25 --generative --hparam shard_size=10``, 2 paraphrase and 5
neighbourhood prompts scored per edit); this puts their curves into one JSON,
``bench/results/wise_routing_before_after.json``, with the figures that changed.

    python bench/wise_before_after.py --before wise_sharded_sequential --after wise_routed_sequential
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
FIGURES = ("reliability_cf", "generalization_cf", "locality_cf", "reliability", "locality_agree",
           "gen_reliability", "gen_generalization", "gen_locality_agree", "seconds_per_edit", "cpu_seconds",
           "load_1min", "info")


def row(run: dict, edits: int) -> dict | None:
    found = [r for r in run["curve"] if r["edits"] == edits]
    return {k: found[0].get(k) for k in FIGURES} | {"pre": found[0]["pre"]} if found else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", default="wise_sharded_sequential", help="results name of the run before")
    p.add_argument("--after", default="wise_routed_sequential", help="results name of the run after")
    p.add_argument("--name", default="wise_routing_before_after")
    args = p.parse_args()
    before, after = (json.loads((RESULTS / f"{n}.json").read_text()) for n in (args.before, args.after))
    same = ("model", "start", "every", "probes", "generative", "hparams")
    if any(before[k] != after[k] for k in same):
        raise SystemExit(f"the runs differ in {[k for k in same if before[k] != after[k]]}")
    edits = sorted({r["edits"] for r in before["curve"]} & {r["edits"] for r in after["curve"]})
    out = {"model": after["model"], "records": f"CounterFact {after['start']}-{after['start'] + max(edits) - 1}",
           "settings": {k: after[k] for k in same}, "threads": after["threads"],
           "before": {"file": f"{args.before}.json", "date": before["machine"]["date"],
                      "resolved_hparams": before["resolved_hparams"]},
           "after": {"file": f"{args.after}.json", "date": after["machine"]["date"],
                     "resolved_hparams": after["resolved_hparams"]},
           "rows": [{"edits": n, "before": row(before, n), "after": row(after, n)} for n in edits]}
    path = RESULTS / f"{args.name}.json"
    path.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

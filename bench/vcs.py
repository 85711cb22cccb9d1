"""Version control of edits at 100 commits: bisect, blame, and a push -> clone round trip.

A 100-commit history is built cheaply through ``Store.write_commit`` (no editor runs): 99
small rank-one updates of MLP output projections at the model's real shapes (entries of
about 1e-4, chosen so that they leave the probe's answer alone) and, at ``--bad-at``,
one **planted** commit: a rank-one update of the LM head that raises another token's
logit by 50 at the probe's last position, so from it on the greedy answer changes. Then:

* bisect: ``ops.bisect`` from the initial commit to HEAD (revisions evaluated, seconds,
  whether the culprit is the planted commit; the bound is 1 + ceil(log2 100) = 8);
* blame: ``ops.blame`` of the expected answer over the 100 live commits (seconds; rank
  of the planted commit, whose effect on the answer's log-probability is negative);
* round trip: ``kvc push`` to a bare repository in a temporary folder, ``kvc clone`` it
  (fresh processes, as a user runs them; seconds), then HEAD's logits of the original and
  of the clone on the probe, compared bit for bit.

The probe is ``The Eiffel Tower is located in the city of``; its expected answer is the
base model's own first word (Paris for SmolLM2). ``--model tiny`` builds a random 4-layer
Llama (as the tests do) in a temporary folder.

    OMP_NUM_THREADS=1 python bench/vcs.py --model tiny
    OMP_NUM_THREADS=1 python bench/vcs.py --model smollm2
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import RESULTS, parser, save, setup

from kedit_vc.delta import Delta, LowRank
from kedit_vc.models import load_model
from kedit_vc.models.families import family_of, num_layers
from kedit_vc.ops.bisect import bisect
from kedit_vc.ops.blame import blame
from kedit_vc.ops.probe import RevisionModel, first_word
from kedit_vc.ops.weights import Weights
from kedit_vc.store import CommitInput, Store, init_store

PROMPT = "The Eiffel Tower is located in the city of"


def tiny_model(folder: Path) -> Path:
    """The tests' tiny random Llama (tests/conftest.save_tiny_llama) saved in ``folder``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import save_tiny_llama

    return save_tiny_llama(folder)


def kvc(args: list[str], cwd: Path) -> float:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kedit_vc.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"kvc {' '.join(args)} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - began


def planted_delta(rm: RevisionModel, answer: str) -> tuple[Delta, str]:
    """A rank-one LM-head update that makes the probe fail, and what the model then says."""
    from kedit_vc.eval.forward import encode_prompt
    from kedit_vc.models.forward import final_hidden

    model, tok = rm.loaded.model, rm.loaded.tokenizer
    with torch.no_grad():
        h = final_hidden(model, torch.tensor([encode_prompt(tok, PROMPT)]))[0, -1].float()  # [d]
    head = model.get_output_embeddings().weight
    name = next(n for n, p in model.named_parameters() if p is head)
    rows = head.shape[0]
    for token in range(1000, rows) if rows > 2000 else range(10, rows):
        left = torch.zeros(rows, 1)
        left[token, 0] = 1.0
        delta = Delta({name: LowRank(left, (50.0 * h / h.dot(h))[:, None])})
        rm.weights.set_deltas([delta])
        rm.at = None
        said = rm.says(PROMPT, answer)
        rm.weights.reset()
        if not said.passed and first_word(said.text):  # says another word instead
            return delta, said.text
    raise SystemExit("no token's boost breaks the probe")


def build_history(root: Path, ref: str, rm: RevisionModel, bad: Delta, commits: int, bad_at: int) -> Store:
    family = family_of(rm.loaded.model)
    params = rm.loaded.model.state_dict()
    layers = num_layers(rm.loaded.model)
    gen = torch.Generator().manual_seed(0)
    store = init_store(root, ref, rm.loaded.fingerprint)
    store.auto_pack = False  # packed once at the end: the history's build is not what is measured
    for position in range(1, commits + 1):
        if position == bad_at:
            store.write_commit(CommitInput("planted: breaks the probe", bad, edit_ids=("planted",)))
            continue
        name = family.mlp_out_weight_name(position % layers)
        rows, cols = params[name].shape
        update = LowRank(1e-2 * torch.randn(rows, 1, generator=gen) / math.sqrt(rows),
                         1e-2 * torch.randn(cols, 1, generator=gen) / math.sqrt(cols))
        store.write_commit(CommitInput(f"harmless {position}", Delta({name: update}), edit_ids=(f"e{position}",)))
    from kedit_vc.store import gitio

    gitio.pack(store.repo)
    return store


def logits_at_head(root: Path, loaded: Any, weights: Weights) -> torch.Tensor:
    from kedit_vc.eval.forward import encode_prompt

    with Store(root) as store:
        weights.set_deltas([store.live_sum()])
    with torch.no_grad():
        return loaded.model(torch.tensor([encode_prompt(loaded.tokenizer, PROMPT)])).logits.clone()


def run(ref: str, commits: int, bad_at: int, workdir: Path) -> dict[str, Any]:
    began = time.perf_counter()
    loaded = load_model(ref, progress=False)
    weights = Weights(loaded.model)
    root = workdir / "origin"
    with init_store(workdir / "probe-store", ref, loaded.fingerprint) as scratch:
        rm = RevisionModel(scratch, loaded, weights)
        answer = first_word(rm.continuation(PROMPT))
        bad, says_after = planted_delta(rm, answer)
    with build_history(root, ref, rm, bad, commits, bad_at) as store:
        chain = store.chain()
        rm = RevisionModel(store, loaded, weights)
        result = bisect(store, PROMPT, answer, model=rm)
        blamed = blame(store, PROMPT, answer, model=rm)  # which commits move the expected answer
    rank = next(i for i, row in enumerate(blamed.rows) if row.sha == chain[bad_at]) + 1
    bare = workdir / "remote.git"
    subprocess.run(["git", "init", "--bare", "-q", str(bare)], check=True)
    kvc(["remote", "add", "origin", str(bare)], root)
    log_s = kvc(["log", "--oneline", "-n", "1"], root)  # a store command's start-up, for scale
    push_s = kvc(["push"], root)
    clone_s = kvc(["clone", str(bare), str(workdir / "clone")], workdir)
    a = logits_at_head(root, loaded, weights)
    b = logits_at_head(workdir / "clone", loaded, weights)
    return {
        "model": ref,
        "history": f"{commits} commits built through Store.write_commit with cheap synthetic deltas (no editor run): "
                   f"rank-one MLP output updates, and at position {bad_at} a planted rank-one LM-head update",
        "probe": {"prompt": PROMPT, "expect": answer, "says_after_planted": says_after.strip(),
                  "judged_by": "greedy"},
        "bisect": {"candidates": result.candidates, "revisions_evaluated": result.evaluations,
                   "bound": result.bound, "seconds": round(result.seconds, 3),
                   "found_planted": result.culprit == chain[bad_at],
                   "per_step_seconds": [round(s.seconds, 3) for s in result.steps]},
        "blame": {"live_commits": len(blamed.rows), "seconds": round(blamed.seconds, 3),
                  "planted_rank": rank, "planted_effect_nats": round(blamed.rows[rank - 1].effect, 3),
                  "answer": blamed.answer},
        "round_trip": {"push_s": round(push_s, 3), "clone_s": round(clone_s, 3),
                       "total_s": round(push_s + clone_s, 3), "kvc_log_s_for_scale": round(log_s, 3),
                       "note": "fresh processes; most of each is Python and torch start-up on a shared CPU",
                       "logits_bit_identical": bool(torch.equal(a, b)),
                       "max_abs_diff": float((a - b).abs().max())},
        "total_s": round(time.perf_counter() - began, 1),
    }


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(model="tiny")
    p.add_argument("--commits", type=int, default=100)
    p.add_argument("--bad-at", type=int, default=37, help="position (1-based) of the planted commit")
    args = p.parse_args()
    setup(args)
    path = Path(args.results_dir or RESULTS) / "vcs.json"
    runs = json.loads(path.read_text()).get("runs", {}) if path.exists() else {}
    with tempfile.TemporaryDirectory(prefix="kvc-bench-vcs-") as tmp:
        work = Path(tmp)
        ref = str(tiny_model(work / "tiny-llama")) if args.model == "tiny" else args.model
        out = run(ref, args.commits, args.bad_at, work / "run")
    out["model"] = args.model
    out["threads"] = args.threads
    runs[args.model] = out
    print(json.dumps(out, indent=2))
    save("vcs", {"runs": runs, "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}, args.results_dir)


if __name__ == "__main__":
    main()

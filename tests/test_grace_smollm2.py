"""GRACE on the real model: 30 sequential single-edit commits of CounterFact facts (the shared
500-record file, records 0..39), made through the Python API (editor + store, no per-commit
evaluation), then HEAD loaded afresh with ``load_edited``: every edit still takes, on the prefixed prompt
and on the raw one a user types (no ``<|endoftext|>``), and the neighbourhood prompts keep the
unedited model's predictions in both forms."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from kedit_vc.eval.datasets import FILES, data_dir

pytestmark = pytest.mark.slow

N_COMMITS = 30
#: Raw prompts' token reliability (every target token the argmax) after all 30 commits.
RAW_TAKES = 0.9


def counterfact_requests(tmp_path, first: int, count: int):  # noqa: ANN001, ANN201
    from kedit_vc.compiler.lower import lower
    from kedit_vc.importers.counterfact import convert
    from kedit_vc.lang import load

    records = json.loads((data_dir() / FILES["counterfact"]).read_text(encoding="utf-8"))[first:first + 2 * count]
    spec = tmp_path / "facts.kedit"
    spec.write_text(convert(records).text, encoding="utf-8")
    return lower(load(spec)).requests[:count]


def test_thirty_sequential_grace_commits_all_take_and_neighbours_hold(tmp_path):
    from kedit_vc import load_edited
    from kedit_vc.compiler.plan import EditorCall, Plan
    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.eval import score_requests, summarize
    from kedit_vc.ops import init
    from kedit_vc.ops.weights import Weights, load_base
    from kedit_vc.store import CommitInput

    started = time.perf_counter()
    requests = counterfact_requests(tmp_path, 0, N_COMMITS)
    assert len(requests) == N_COMMITS
    store = init(tmp_path / "store", "smollm2")
    loaded = load_base(store)
    weights = Weights(loaded.model)
    editor, hparams = get_editor("grace"), build_hparams("grace", {})
    for request in requests:
        result = editor.edit(loaded.model, loaded.tokenizer, [request], hparams,
                             EditContext(fingerprint=store.fingerprint, progress=False))
        store.write_commit(CommitInput(
            f"grace: {request.subject} -> {request.target_new}", delta=result.delta, patches=result.patches,
            plan=Plan(calls=(EditorCall("grace", {}, (request,)),)).to_json(), method="grace",
            edit_ids=(request.edit_id,), extra={"editor_info": [dict(result.info)]}))
        weights.attach(result.patches)  # the next edit sees the live codebook, as `kvc commit` does
    assert len(store.live_patches("HEAD")) == N_COMMITS
    assert store.fsck() == []

    edit_s = time.perf_counter() - started
    model, tokenizer = load_edited(store.paths.root, "HEAD")
    # The rewrite and five neighbourhood probes of each edit: what "takes" and "neighbours hold" need.
    requests = [replace(r, probes=tuple(p for p in r.probes if p.kind == "rewrite")
                        + tuple(p for p in r.probes if p.kind == "neighbour")[:5]) for r in requests]
    post = score_requests(model, tokenizer, requests, prompts="both", generative=False)
    Weights(model).reset()
    pre = score_requests(model, tokenizer, requests, prompts="both", generative=False)
    report = summarize(post, pre)
    takes = [row.metrics["reliability"] for row in report.rows]
    assert takes == [1.0] * N_COMMITS, takes  # every target token the argmax, after all 30 commits
    assert report.metrics["reliability_cf"] >= 0.95, report.metrics  # new object beats the true one
    assert report.metrics["locality_agree"] >= 0.99, report.metrics  # neighbours keep their predictions
    assert report.pre_metrics["reliability_cf"] <= 0.5
    # The raw prompt has its own codebook key (raw_context): the edit takes there too
    # (raw_locality: argmax agreement with the unedited model on raw neighbour prompts).
    assert report.metrics["raw_reliability"] >= RAW_TAKES, report.metrics
    assert report.metrics["raw_reliability_cf"] >= 0.95, report.metrics
    assert report.metrics["raw_locality"] >= 0.99, report.metrics
    print(f"\n{N_COMMITS} GRACE commits: {edit_s:.1f} s; total {time.perf_counter() - started:.1f} s; "
          f"efficacy {report.metrics['reliability_cf']:.3f}, locality {report.metrics['locality_agree']:.3f}")

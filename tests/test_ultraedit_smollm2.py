"""UltraEdit at scale on the real model, end to end: 200 CounterFact facts (EasyEdit's flat
file, dev records 4200..4399, never reported) imported as a spec and committed in two
100-fact chunks (`--batch-size 100`), the second edited from the first's carried
normalisation statistics. Issue 15's floor: >= 0.9 of the facts take (CounterFact efficacy:
the new object beats the true one), on prefixed prompts and on raw ones as users type them."""

from __future__ import annotations

import json

import pytest

from kedit_vc.eval.datasets import FILES, data_dir

pytestmark = pytest.mark.slow


def test_two_hundred_facts_in_two_ultraedit_commits_take(tmp_path):
    from kedit_vc.eval import score_requests, summarize
    from kedit_vc.importers import import_file
    from kedit_vc.ops import CommitOptions, Evaluator, init, live_edits
    from kedit_vc.ops.batches import commit_in_batches

    records = json.loads((data_dir() / FILES["counterfact5k"]).read_text(encoding="utf-8"))[4200:4400]
    source = tmp_path / "facts.json"
    source.write_text(json.dumps(records), encoding="utf-8")
    spec = tmp_path / "facts.kedit"
    spec.write_text(import_file("easyedit", source).text, encoding="utf-8")

    store = init(tmp_path / "store", "smollm2")
    events = commit_in_batches(store, spec, 100, CommitOptions(method="ultraedit", eval_batch_size=32))
    assert [e.status for e in events] == ["committed", "committed"]
    assert store.carried_state("HEAD"), "the second chunk's commit carries the lifelong statistics"
    first_n = store.carried_state("HEAD~1")
    assert all(v.numel() for v in first_n.values())

    requests = [e.request for e in live_edits(store)]
    assert len(requests) >= 190  # the importer merges exact repeats and skips contradictions
    evaluator = Evaluator(store, prompts="both", generative=False)
    evaluator.move_to(store.head())
    model, tok = evaluator.loaded.model, evaluator.loaded.tokenizer
    post = score_requests(model, tok, requests, prompts="both")
    evaluator.to_base()
    pre = score_requests(model, tok, requests, prompts="both")
    report = summarize(post, pre)
    assert report.metrics["reliability_cf"] >= 0.9, report.metrics
    assert report.metrics["raw_reliability_cf"] >= 0.85, report.metrics
    assert report.pre_metrics["reliability_cf"] <= 0.5  # the facts are new to the model

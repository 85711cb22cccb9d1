"""``kvc commit --batch-size``: chunks in spec order, one commit each, resumable after a stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import run_kvc, write_spec

FACTS = [("Eiffel Tower", "Paris", "Rome"), ("Louvre", "Paris", "Berlin"), ("Colosseum", "Rome", "Madrid"),
         ("Big Ben", "London", "Oslo"), ("Brandenburg Gate", "Berlin", "Vienna")]
BODY = "\n".join(f'edit "{s}" prompt "The {{subject}} is located in the city of": "{old}" -> "{new}"'
                 for s, old, new in FACTS)


def _init(project: Path, model_dir: Path) -> None:
    result = run_kvc("init", "--model", str(model_dir))
    assert result.exit_code == 0, result.output


def _chain(project: Path) -> list[dict]:
    from kedit_vc.store import open_store

    with open_store(project) as store:
        return [store.manifest(sha) for sha in store.chain("HEAD")]


def _head_sum(project: Path) -> dict[str, torch.Tensor]:
    from kedit_vc.store import open_store

    with open_store(project) as store:
        total = store.live_sum("HEAD")
        return {name: total.dense(name).clone() for name in total.updates}


def test_split_plan_keeps_order_sizes_and_settings():
    from kedit_vc.compiler.plan import EditorCall, EditRequest, Plan
    from kedit_vc.ops.batches import split_plan

    def req(i: int) -> EditRequest:
        return EditRequest(f"e-{i}", f"s{i}", "{} is in", f"n{i}", f"o{i}")

    plan = Plan(calls=(EditorCall("rome", {"v_steps": 3}, tuple(req(i) for i in range(3))),
                       EditorCall("memit", {}, tuple(req(i) for i in range(3, 7)))))
    chunks = split_plan(plan, 2)
    assert [[r.edit_id for r in c.requests] for c in chunks] == [["e-0", "e-1"], ["e-2", "e-3"], ["e-4", "e-5"], ["e-6"]]
    assert [(c.method, dict(c.hparams), len(c.requests)) for c in chunks[1].calls] == [
        ("rome", {"v_steps": 3}, 1), ("memit", {}, 1)]
    with pytest.raises(Exception, match="batch-size"):
        split_plan(plan, 0)


def test_batches_commit_one_chunk_each_and_resume_equals_uninterrupted(tmp_path, monkeypatch, tiny_model_dir):
    import kedit_vc.ops.batches as batches

    # Uninterrupted: 5 edits in chunks of 2 -> 3 commits.
    whole = tmp_path / "whole"
    whole.mkdir()
    monkeypatch.chdir(whole)
    _init(whole, tiny_model_dir)
    spec = write_spec(whole, "facts.kedit", BODY)
    result = run_kvc("commit", str(spec), "--batch-size", "2", "--no-progress", "--json")
    assert result.exit_code == 0, result.output
    chunks = json.loads(result.stdout)["chunks"]
    assert [(c["chunk"], c["status"], c["edits"]) for c in chunks] == [
        (1, "committed", 2), (2, "committed", 2), (3, "committed", 1)]
    manifests = _chain(whole)
    recorded = [m.get("extra", {}).get("batch") for m in manifests]
    assert sorted(b["chunk"] for b in recorded if b) == [1, 2, 3]
    expected = _head_sum(whole)

    # Stopped after the second chunk (as a Ctrl-C would), then run again.
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    monkeypatch.chdir(stopped)
    _init(stopped, tiny_model_dir)
    spec = write_spec(stopped, "facts.kedit", BODY)
    real = batches.commit_plan
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(batches, "commit_plan", interrupted)
    result = run_kvc("commit", str(spec), "--batch-size", "2", "--no-progress")
    assert result.exit_code == 130, result.output  # kvc's Ctrl-C exit
    assert len([m for m in _chain(stopped) if m.get("extra", {}).get("batch")]) == 2
    monkeypatch.setattr(batches, "commit_plan", real)
    result = run_kvc("commit", str(spec), "--batch-size", "2", "--no-progress", "--json")
    assert result.exit_code == 0, result.output
    statuses = [c["status"] for c in json.loads(result.stdout)["chunks"]]
    assert statuses == ["skipped", "skipped", "committed"]
    resumed = _head_sum(stopped)
    assert resumed.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-6)

    # A third run has nothing left to do and writes nothing.
    before = len(_chain(stopped))
    result = run_kvc("commit", str(spec), "--batch-size", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "0 chunk(s) committed, 3 already live" in result.output
    assert len(_chain(stopped)) == before


def test_eval_sample_scores_a_seeded_subset_of_the_live_edits(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.chdir(tmp_path)
    _init(tmp_path, tiny_model_dir)
    spec = write_spec(tmp_path, "facts.kedit", BODY)
    assert run_kvc("commit", str(spec), "--batch-size", "5", "--no-progress").exit_code == 0
    args = ("eval", "--sample", "2", "--json", "--no-generative", "--prompts", "prefixed", "--no-progress")
    first, again = (json.loads(run_kvc(*args).stdout) for _ in range(2))
    assert first["n_edits"] == 2
    ids = lambda report: sorted(report["edit_ids"])  # noqa: E731
    assert ids(first) == ids(again)
    every = json.loads(run_kvc("eval", "--json", "--no-generative", "--prompts", "prefixed", "--no-progress").stdout)
    assert every["n_edits"] == 5 and set(ids(first)) <= set(ids(every))
    refused = run_kvc("eval", "--sample", "2", "--history")
    assert refused.exit_code == 2 and "--sample and --history" in refused.stderr

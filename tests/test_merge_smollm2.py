"""Merge on the real model: two branches each write a different fact with ROME; the merge
(default strategy auto: re-solve both on the common ancestor's weights, or compose both
sides' deltas when that would weaken an edit) weakens no check, and both facts take at the
merged HEAD (every rewrite-prompt token the top prediction, per-edit reliability 1.0)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

ROME = "method rome { v_steps = 20 stats_tokens = 4000 context_templates = 5 }"
EIFFEL = 'edit "Eiffel Tower" prompt "The {subject} is located in the city of": "Paris" -> "Rome"'
TOKYO = 'edit "Tokyo" prompt "{subject} is the capital of": "Japan" -> "China"'


def test_two_branches_merge_and_both_facts_take(tmp_path):
    from kedit_vc.ops import CommitOptions, Evaluator, branches, commit_spec, init, live_edits
    from kedit_vc.ops.merge import merge

    store = init(tmp_path, "smollm2")
    branches.create_branch(store, "tokyo")
    ids = {}
    for branch, name, body in (("main", "eiffel", EIFFEL), ("tokyo", "tokyo", TOKYO)):
        branches.switch(store, branch)
        spec = tmp_path / f"{name}.kedit"
        spec.write_text(f"{ROME}\n{body}\n")
        result = commit_spec(store, spec, CommitOptions())
        ids[name] = result.plan.requests[0].edit_id
        assert result.report.rows[0].metrics["reliability"] == 1.0, result.report.to_json()
    branches.switch(store, "main")

    # The gate also keeps raw-prompt checks (no <|endoftext|> prefix); a ROME re-solve of the
    # second fact on weights the first already moved can miss one there. The default strategy
    # (auto) then composes both sides' deltas instead, and says so; nothing may be weakened.
    merged = merge(store, "tokyo")
    assert merged.outcome == "merged" and merged.losses == (), merged.losses
    assert merged.attempts[0]["strategy"] == "resolve" and merged.attempts[0]["method"] == "rome"
    if merged.strategy == "compose":
        assert merged.attempts[0]["edits_weakened"] > 0 and "would weaken" in merged.reason
    else:
        assert merged.method == "rome" and merged.reason == "auto: the rome re-solve weakens no edit"
    assert store.read_commit("HEAD").manifest["extra"]["merge"]["strategy"] == merged.strategy
    assert {e.request.edit_id for e in live_edits(store)} == set(ids.values())
    record = store.read_commit("HEAD")
    assert record.op == "merge" and len(record.parents) == 2
    # Scored afresh at the merged HEAD as the store materialises it (not the re-solve's own weights).
    report = Evaluator(store).evaluate("HEAD").report
    assert {row.edit_id: row.metrics["reliability"] for row in report.rows} == {i: 1.0 for i in ids.values()}
    assert store.fsck() == []
    store.close()

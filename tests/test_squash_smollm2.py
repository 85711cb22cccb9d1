"""On the real model, three ROME commits squash by default into one commit that keeps all
three: the greedy answer of each rewrite prompt is the new object at the old tip, in the
squash's own measurement, and on a fresh copy of the base model given the stored squash
commit. The default tries the joint ROME re-solve first; when the gate finds it would weaken
an edit it composes instead, and the commit records that attempt and why."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

ROME = "method rome { v_steps = 20 stats_tokens = 4000 context_templates = 5 }"
FACTS = {
    "eiffel": 'edit "Eiffel Tower" prompt "The {subject} is located in the city of": "Paris" -> "Rome"',
    "france": 'edit "France" prompt "The capital of {subject} is": "Paris" -> "Madrid"',
    "tokyo": 'edit "Tokyo" prompt "{subject} is the capital of": "Japan" -> "China"',
}


def test_three_rome_commits_squash_into_one_that_keeps_their_greedy_answers(tmp_path):
    from kedit_vc.eval.answers import contains_answer
    from kedit_vc.eval.generative import budget, greedy_continuations
    from kedit_vc.ops import CommitOptions, commit_spec, init, live_edits, squash
    from kedit_vc.ops.weights import Weights, load_base

    store = init(tmp_path, "smollm2")
    for name, body in FACTS.items():
        spec = tmp_path / f"{name}.kedit"
        spec.write_text(f"{ROME}\n{body}\n")
        commit_spec(store, spec, CommitOptions())

    result = squash(store, "HEAD~3..HEAD")
    # The default keeps every edit: the joint re-solve when the gate passes it (its patch no
    # bigger than the parts), else the exact composition, with the re-solve's attempt recorded.
    print("squash:", result.method, result.attempts)
    assert result.sha is not None and result.losses == ()
    assert result.method in ("joint_rome", "compose")
    if result.method == "compose":
        assert any(a.get("method") == "joint_rome" and a.get("edits_weakened", 0) > 0
                   for a in result.attempts), result.attempts
    assert result.after.metrics["delta_bytes"] <= sum(
        store.read_commit(sha).delta().summary().stored_bytes for sha in store.chain(result.tip)[1:])
    assert len(store.chain()) == 2  # init + the squash
    # Every edit's greedy rewrite answer held at the tip and still holds after.
    for report in (result.before, result.after):
        assert [row.metrics["gen_reliability"] for row in report.rows] == [1.0, 1.0, 1.0], report.to_json()
        assert [row.metrics["reliability"] for row in report.rows] == [1.0, 1.0, 1.0], report.to_json()

    # And from the store alone: base weights + the squash commit's delta.
    loaded = load_base(store)
    Weights(loaded.model).set_deltas([store.read_commit("HEAD").delta()])
    requests = [e.request for e in live_edits(store)]
    answers = greedy_continuations(loaded.model, loaded.tokenizer, [r.rewrite_prompt for r in requests],
                                   [budget(loaded.tokenizer, r.target_new) for r in requests])
    assert all(contains_answer(a, r.target_new) for a, r in zip(answers, requests)), answers
    assert store.fsck() == []
    store.close()

"""Bisect and blame on a tiny random Llama, with a planted bad commit.

The "fact" is the base model's own greedy answer to PROMPT (its first word). The planted
commit is a rank-one update of the LM head that raises another token's logit by 50 at
the prompt's last position, so from that commit on the greedy answer is another word;
the other commits are small rank-one updates of MLP weights that leave the answer alone.
"""

from __future__ import annotations

import json
import math
import tempfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_kvc
from kedit_vc.delta import Delta, LowRank
from kedit_vc.store import init_store
from vcs_helpers import cheap_delta, commit_delta

PROMPT = "The Eiffel Tower is located in the city of"


class Planted:
    """The tiny model loaded once, its answer to PROMPT, and a delta that breaks it."""

    def __init__(self, model_dir) -> None:
        from kedit_vc.eval.forward import encode_prompt
        from kedit_vc.models import load_model
        from kedit_vc.models.forward import final_hidden
        from kedit_vc.ops.probe import first_word
        from kedit_vc.ops.weights import Weights

        self.model_dir = str(model_dir)
        self.loaded = load_model(self.model_dir, progress=False)
        self.weights = Weights(self.loaded.model)
        model, tok = self.loaded.model, self.loaded.tokenizer
        from kedit_vc.eval.generative import MAX_NEW_TOKENS, greedy_continuations

        self.answer = first_word(greedy_continuations(model, tok, [PROMPT], [MAX_NEW_TOKENS])[0])
        assert self.answer
        with torch.no_grad():
            ids = torch.tensor([encode_prompt(tok, PROMPT)])
            h = final_hidden(model, ids)[0, -1]  # [d]
        rows = model.lm_head.weight.shape[0]
        for token in range(10, rows):  # the first token whose boost breaks the probe
            left = torch.zeros(rows, 1)
            left[token, 0] = 1.0
            delta = Delta({"lm_head.weight": LowRank(left, (50.0 * h / h.dot(h))[:, None])})
            self.weights.set_deltas([delta])
            text = greedy_continuations(model, tok, [PROMPT], [4])[0]
            self.weights.reset()
            if self.answer not in text.split():
                self.bad = delta
                self.says_after = text
                return
        raise AssertionError("no token's boost breaks the probe")


@pytest.fixture(scope="module")
def planted(tiny_model_dir) -> Planted:
    return Planted(tiny_model_dir)


def build_history(store, n: int, bad_at: int, planted: Planted) -> list[str]:
    """``n`` commits after the root; the one at position ``bad_at`` (1-based) is the planted one."""
    store.auto_pack = False
    for position in range(1, n + 1):
        if position == bad_at:
            commit_delta(store, planted.bad, "planted")
        else:
            commit_delta(store, cheap_delta(position, scale=1e-3), f"harmless {position}")
    return store.chain()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bisect_finds_the_planted_commit_at_every_position(planted, data):
    from kedit_vc.ops.bisect import bisect
    from kedit_vc.ops.probe import RevisionModel

    n = data.draw(st.integers(1, 24), label="n")
    bad_at = data.draw(st.integers(1, n), label="bad_at")
    with tempfile.TemporaryDirectory() as root, init_store(root, planted.model_dir, planted.loaded.fingerprint) as store:
        chain = build_history(store, n, bad_at, planted)
        model = RevisionModel(store, planted.loaded, planted.weights)
        result = bisect(store, PROMPT, planted.answer, model=model)
        assert result.culprit == chain[bad_at]
        assert result.culprit_message == "planted"
        assert result.evaluations <= math.ceil(math.log2(n)) + 1 if n > 1 else result.evaluations == 1
        assert result.evaluations <= result.bound
        # with GOOD just before the culprit and BAD at it, one evaluation settles it
        narrow = bisect(store, PROMPT, planted.answer, good=chain[bad_at - 1], bad=chain[bad_at], model=model)
        assert narrow.culprit == chain[bad_at] and narrow.evaluations == 1


def test_bisect_and_blame_cli(project, planted):
    with init_store(project, planted.model_dir, planted.loaded.fingerprint) as store:
        chain = build_history(store, 12, 5, planted)
    out = run_kvc("bisect", "--probe", PROMPT, "--expect", planted.answer)
    assert out.exit_code == 0, out.output
    assert f"first bad commit: {chain[5]}" in out.output and "planted" in out.output
    data = json.loads(run_kvc("bisect", "--probe", PROMPT, "--expect", planted.answer, "--json",
                              "--verify-good").output)
    assert data["culprit"] == chain[5] and data["evaluations"] <= 1 + 1 + math.ceil(math.log2(12))
    assert data["judged_by"] == "greedy" and data["steps"][0]["commit"] == chain[0]
    passing = run_kvc("bisect", "--probe", PROMPT, "--expect", planted.answer, "--bad", "HEAD~8")
    assert passing.exit_code == 1 and "nothing to bisect" in passing.output
    wrong = run_kvc("bisect", "--probe", PROMPT, "--expect", "x", "--good", "nonsense")
    assert wrong.exit_code == 1 and "unknown revision 'nonsense'" in wrong.stderr

    blamed = json.loads(run_kvc("blame", PROMPT, "--json").output)
    assert blamed["rows"][0]["commit"] == chain[5]  # the planted commit moves HEAD's answer most
    assert blamed["answer"] == planted.says_after.split()[0]
    assert len(blamed["rows"]) == 12 and blamed["rows"][0]["effect"] > 1
    assert all(abs(row["effect"]) < 0.1 for row in blamed["rows"][1:])
    blamed = json.loads(run_kvc("blame", PROMPT, "--answer", planted.answer, "--json").output)
    assert blamed["rows"][0]["commit"] == chain[5] and blamed["rows"][0]["effect"] < 0
    table = run_kvc("blame", PROMPT, "--limit", "3").output
    assert chain[5][:10] in table.splitlines()[2] and len(table.splitlines()) == 5


def test_blame_leaves_the_weights_as_they_were(project, planted):
    """Leave-one-out is out of place: after blame the model is at HEAD bit for bit, and each
    row equals a fresh materialisation without that commit up to float rounding."""
    from kedit_vc.ops.blame import blame
    from kedit_vc.ops.probe import RevisionModel

    with init_store(project, planted.model_dir, planted.loaded.fingerprint) as store:
        build_history(store, 6, 3, planted)
        model = RevisionModel(store, planted.loaded, planted.weights)
        model.move_to(store.head())
        before = {k: v.clone() for k, v in planted.loaded.model.state_dict().items()}
        result = blame(store, PROMPT, planted.answer, model=model)
        after = planted.loaded.model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        live = store.live_commits()
        row = next(r for r in result.rows if r.sha == live[2])
        planted.weights.set_deltas([materialize_without(store, live, 2)])
        model.at = None
        assert abs(model.logprob(PROMPT, planted.answer) - row.logprob_without) < 1e-3
        planted.weights.reset()


def materialize_without(store, live: list[str], index: int) -> Delta:
    from kedit_vc.delta import Dense, materialize

    sums = materialize([store.read_commit(sha).delta() for i, sha in enumerate(live) if i != index])
    return Delta({name: Dense(value) for name, value in sums.items()})

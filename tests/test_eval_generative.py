"""Generative metrics (gen_*) and raw-prompt metrics (raw_*) on a tiny random Llama.

The model is random, so every expected answer is first computed from the model itself
with an unbatched argmax loop; the tests then check that a probe whose answer is in that
greedy continuation counts and one whose answer is not does not.
"""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kedit_vc.compiler.plan import EditRequest, Probe
from kedit_vc.eval import EvalReport, score_requests, summarize
from kedit_vc.eval.answers import contains_answer, normalise
from kedit_vc.eval.forward import encode_prompt
from kedit_vc.eval.generative import MAX_NEW_TOKENS, budget, greedy_continuations
from kedit_vc.eval.registry import METRICS
from test_eval_fixtures import tiny_model, tiny_tokenizer

PROMPTS = ["the capital of France is", "Ghana is in", "a", "Eiffel Tower is located in the city of"]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def reference_greedy(model, tok, prompt: str, n: int, prefixed: bool = True) -> list[str]:
    """Greedy words by repeated full unpadded forwards (no cache, no batching, no generate())."""
    ids = encode_prompt(tok, prompt, prefixed)
    new: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            new.append(int(model(torch.tensor([ids + new])).logits[0, -1].argmax()))
    return tok.convert_ids_to_tokens(new)


# --- normalisation -------------------------------------------------------------------------


def test_normalise_folds_case_space_and_punctuation():
    assert normalise("  Rome.") == "rome"
    assert normalise("The city of ROME, Italy!") == "the city of rome italy"
    assert normalise("Saint-Étienne") == "saint étienne"


@pytest.mark.parametrize("generated, answer, expected", [
    (" Rome, the capital", "Rome", True),
    ("rome.", " Rome", True),
    (" the city of Rome", "city of rome", True),
    (" Romeo and Juliet", "Rome", False),   # whole words only
    (" Paris", "Rome", False),
    (" anything", "", False),               # an empty answer is never given
    (" anything", "...", False),
])
def test_contains_answer(generated, answer, expected):
    assert contains_answer(generated, answer) is expected


_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ", min_size=1, max_size=6)


@given(st.lists(_word, max_size=4), st.lists(_word, min_size=1, max_size=3), st.lists(_word, max_size=4),
       st.sampled_from(["", ".", ",", "!", " ", "?"]))
def test_an_answer_inside_any_text_is_found(before, answer, after, punct):
    text = " ".join(before) + " " + " ".join(answer).upper() + punct + " " + " ".join(after)
    assert contains_answer(text, " " + " ".join(answer))
    assert normalise(normalise(text)) == normalise(text)


# --- greedy continuations ------------------------------------------------------------------


@pytest.mark.parametrize("prefixed", [True, False])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_batched_left_padded_generation_matches_unbatched_greedy(model, tok, prefixed, batch_size):
    budgets = [4, 2, 5, 3]
    got = greedy_continuations(model, tok, PROMPTS, budgets, prefixed=prefixed, batch_size=batch_size)
    for prompt, n, text in zip(PROMPTS, budgets, got):
        assert text.split() == reference_greedy(model, tok, prompt, n, prefixed)


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_a_prompt_asked_again_with_other_budgets_gets_each_budgets_greedy_answer(model, tok, batch_size):
    """Repeated prompts (one MQuAKE question per answer alias) are generated once; each ask
    still reads exactly its own budget's greedy continuation."""
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[0], PROMPTS[1]]
    budgets = [2, 3, 5, 1, 3]
    got = greedy_continuations(model, tok, prompts, budgets, batch_size=batch_size)
    for prompt, n, text in zip(prompts, budgets, got):
        assert text.split() == reference_greedy(model, tok, prompt, n)


def test_budget_is_answer_length_plus_slack_capped(tok):
    assert budget(tok, "Rome") == 1 + 3
    assert budget(tok, "the city of Rome") == 4 + 3
    assert budget(tok, " ".join(["Rome"] * 9)) == MAX_NEW_TOKENS
    assert budget(tok, " ".join(["Rome"] * 12)) == 12


def test_generation_restores_training_mode(model, tok):
    model.train()
    try:
        greedy_continuations(model, tok, PROMPTS[:1], [2])
        assert model.training
    finally:
        model.eval()


# --- metrics -------------------------------------------------------------------------------


def _requests(model, tok) -> list[EditRequest]:
    """Answers taken from (hit) or kept out of (miss) the model's own greedy continuations."""
    p0, p1, p2, p3 = PROMPTS
    said = {p: reference_greedy(model, tok, p, 4) for p in PROMPTS}
    never = {p: next(w for w in ("Paris", "Rome", "Tokyo", "Berlin", "Japan") if w not in said[p]) for p in PROMPTS}
    return [
        EditRequest("hit", "France", "the capital of {} is", said[p0][0], None, (
            Probe("rewrite", p0, said[p0][0], never[p0]),
            Probe("paraphrase", p1, said[p1][1]),           # second word: inside the budget of 4
            Probe("neighbour", p2, said[p2][0], never[p2]),
            Probe("hop", p3, never[p3]),                    # not said: portability 0
        )),
        EditRequest("miss", "Ghana", "{} is in", never[p1], None, (
            Probe("rewrite", p1, never[p1], said[p1][0]),
        )),
    ]


@pytest.fixture(scope="module")
def scored(model, tok):
    return score_requests(model, tok, _requests(model, tok), batch_size=2, prompts="both", generative=True)


def test_continuation_that_contains_the_target_counts_and_one_that_does_not_does_not(scored):
    report = summarize(scored, scored)
    rows = {r.edit_id: r.metrics for r in report.rows}
    assert rows["hit"]["gen_reliability"] == 1.0
    assert rows["hit"]["gen_generalization"] == 1.0
    assert rows["hit"]["gen_locality"] == 1.0
    assert rows["hit"]["gen_portability"] == 0.0
    assert rows["miss"]["gen_reliability"] == 0.0
    assert report.metrics["gen_reliability"] == 0.5 and report.counts["gen_reliability"] == 2
    assert report.metrics["gen_locality_agree"] == 1.0     # the same model before and after


def test_generative_and_raw_metrics_lie_in_the_unit_interval(scored):
    report = summarize(scored, scored)
    names = [n for n in report.metrics if n.startswith(("gen_", "raw_")) and "magnitude" not in n]
    assert {"gen_reliability", "raw_reliability", "raw_gen_reliability", "raw_reliability_cf"} <= set(names)
    for name in names:
        assert 0.0 <= report.metrics[name] <= 1.0, name


def test_metrics_are_skipped_not_zero_without_generations_or_raw_prompts(model, tok):
    plain = score_requests(model, tok, _requests(model, tok))
    report = summarize(plain, plain)
    assert plain.forms == "prefixed" and "reliability" in report.metrics
    assert not [n for n in report.metrics if n.startswith(("gen_", "raw_"))]
    only_rewrite = [EditRequest("e", "x", "{} is", "Rome", None, (Probe("rewrite", "a", "Rome"),))]
    report = summarize(score_requests(model, tok, only_rewrite, generative=True))
    assert "gen_reliability" in report.metrics and "gen_portability" not in report.metrics


def test_scores_with_generations_and_raw_prompts_round_trip(scored):
    assert type(scored).loads(scored.dumps()) == scored
    report = summarize(scored, scored)
    assert EvalReport.loads(report.dumps()) == report and report.forms == "both"


def test_raw_prompts_differ_from_prefixed_when_the_prefix_matters(model, tok, scored):
    assert scored.forms == "both"
    probe = scored.edits[0].probes[0]
    assert probe.raw is not None and probe.raw.target_nll != pytest.approx(probe.target_nll, abs=1e-4)
    # the raw continuation is what the model says to the bare prompt
    assert probe.raw.generated.split() == reference_greedy(model, tok, probe.prompt, budget(tok, probe.target), False)
    report = summarize(scored, scored)
    assert report.metrics["raw_reliability_cf"] is not None and "raw_reliability" in report.metrics


def _bos_tokenizer():
    """The tiny tokenizer, but adding a BOS itself (as Gemma's does): no prefix token is added."""
    from tokenizers.processors import TemplateProcessing

    tok = tiny_tokenizer(extra_words=["<bos>"])
    bos = tok.convert_tokens_to_ids("<bos>")
    tok.backend_tokenizer.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos)])
    tok.bos_token = "<bos>"
    return tok


def test_a_tokenizer_with_its_own_bos_is_scored_once(model, monkeypatch):
    from kedit_vc.eval import forward

    tok = _bos_tokenizer()
    assert tok("a").input_ids[0] == tok.bos_token_id
    requests = [EditRequest("e", "Ghana", "{} is in", "Africa", None, (Probe("rewrite", "Ghana is in", "Africa", "Asia"),))]
    calls = []
    real = forward.score_continuations
    monkeypatch.setattr("kedit_vc.eval.scoring.score_continuations",
                        lambda *a, **k: calls.append(k.get("prefixed")) or real(*a, **k))
    scores = score_requests(model, tok, requests, prompts="both", generative=True)
    assert calls == [True] and scores.forms == "same"
    probe = scores.edits[0].probes[0]
    assert probe.raw is not None and probe.raw.target_nll == probe.target_nll
    assert probe.raw.generated == probe.generated
    report = summarize(scores, scores)
    assert report.metrics["raw_reliability"] == report.metrics["reliability"]
    assert "scored once" in report.forms_table(["reliability"], "both")


# --- gate ----------------------------------------------------------------------------------


def _check(report_path, *args) -> int:
    from kedit_vc.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--report", str(report_path), *args])
    return exit_info.value.code


def test_check_gates_on_generative_and_raw_metrics(scored, tmp_path, capsys):
    path = tmp_path / "eval.json"
    path.write_text(summarize(scored, scored).dumps())  # gen_reliability 0.5
    assert _check(path, "--min-gen-reliability", "0.5") == 0
    assert _check(path, "--min-gen-reliability", "0.8") == 1
    out = capsys.readouterr().out
    assert "gen_reliability" in out and "FAIL" in out
    assert _check(path, "--min", "raw_gen_reliability=0.5", "--min-raw-reliability", "0") == 0
    plain = tmp_path / "plain.json"
    plain.write_text(EvalReport(metrics={"reliability": 1.0}).dumps())
    assert _check(plain, "--min-gen-reliability", "0.1") == 1  # unmeasured: not kept
    assert "missing" in capsys.readouterr().out


def test_a_spec_may_expect_generative_metrics(tmp_path):
    from kedit_vc.compiler import compile_file

    spec = tmp_path / "g.kedit"
    spec.write_text('edit "Ghana" prompt "{subject} is in": "Africa" -> "Asia"\n'
                    "expect gen_reliability >= 0.8\nexpect raw_reliability >= 0.9\n", encoding="utf-8")
    plan = compile_file(str(spec))
    assert {(e.metric, e.threshold) for e in plan.expectations} == {("gen_reliability", 0.8), ("raw_reliability", 0.9)}
    assert all(e.metric in METRICS for e in plan.expectations)
    json.dumps([e.metric for e in plan.expectations])


# --- through the store: kvc commit, kvc eval ----------------------------------------------


def test_commit_and_eval_print_generative_and_raw_figures(project, tiny_model_dir):
    from conftest import run_kvc, write_spec

    def ok(result):
        assert result.exit_code == 0, result.output
        return result.output

    ok(run_kvc("init", "--model", str(tiny_model_dir)))
    spec = write_spec(project, "a.kedit", 'edit "Eiffel Tower" prompt "The {subject} is located in the city of": '
                      '"Paris" -> "Rome" {\n    paraphrase "Tourists travel to see the {subject} in the city of"\n'
                      '    neighbour "Louvre" => "Paris"\n}')
    committed = ok(run_kvc("commit", str(spec), "--no-progress"))
    assert "gen_reliability" in committed and "raw post" in committed
    table = ok(run_kvc("eval", "--no-progress"))
    lines = {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:] if line.strip()}
    assert {"reliability", "gen_reliability", "gen_generalization", "gen_locality"} <= set(lines)
    assert len(lines["gen_reliability"]) == 5  # pre, post, raw pre, raw post, n
    assert "raw = the prompt as a user types it" in table
    only_raw = ok(run_kvc("eval", "--no-progress", "--prompts", "raw"))
    assert "raw post" in only_raw and " pre " not in only_raw.splitlines()[1].replace("raw pre", "")
    data = json.loads(ok(run_kvc("eval", "--json", "--no-progress")))
    assert data["forms"] == "both"
    assert {"gen_reliability", "raw_reliability", "raw_gen_reliability"} <= set(data["metrics"])
    plain = json.loads(ok(run_kvc("eval", "--json", "--no-progress", "--prompts", "prefixed", "--no-generative")))
    assert not [n for n in plain["metrics"] if n.startswith(("gen_", "raw_"))]
    assert data["metrics"]["gen_reliability"] < 1.0  # the tiny model does not say the new objects
    gate = run_kvc("check", "--min-gen-reliability", "1.0")
    assert gate.exit_code == 1 and "gen_reliability" in gate.output
    assert run_kvc("check", "--min-gen-reliability", "1.01").exit_code == 2  # outside the metric's range

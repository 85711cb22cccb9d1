"""MeLLo (method ``mello``): the loop ends within its hop bound whatever the model writes,
retrieval picks the stored fact nearest a subquestion and never a reverted one, the parsing
of the model's lines is tolerant, decoding with the reused prompt cache is the model's own
greedy decoding, and ``kvc ask`` answers over a revision (or says why it cannot)."""

from __future__ import annotations

import pytest
import torch
from conftest import run_kvc, write_spec
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli_store import EIFFEL, FRANCE, TOKYO

TINY_MELLO = "method mello { layer = 1 hops = 2 max_new_tokens = 12 }"


def commit(store, name, body, method=TINY_MELLO):
    from kedit_vc.ops import CommitOptions, commit_spec

    return commit_spec(store, write_spec(store.paths.root, name, body, method=method), CommitOptions())


def handle_of(model):
    from kedit_vc.patches.attach import side_patches
    from kedit_vc.patches.memory.mello import MelloHandle

    (handle,) = side_patches(model)._handles
    assert isinstance(handle, MelloHandle)
    return handle


class Scripted:
    """A session that returns scripted generations (then repeats the last one) and records
    what the loop wrote into it."""

    def __init__(self, steps: list[str]) -> None:
        self.steps, self.written, self.calls = list(steps), "", 0

    def extend(self, text: str) -> None:
        self.written += text

    def generate(self, max_new_tokens, until=None) -> str:  # noqa: ANN001
        from kedit_vc.patches.memory.mello_prompt import cut

        text = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        end = (until or cut)(text)
        return text if end is None else text[:end]


# -- the loop --------------------------------------------------------------------------------


def test_the_loop_reads_the_retrieved_fact_and_returns_the_final_answer():
    from kedit_vc.patches.memory.mello import run_loop

    session = Scripted([
        "Subquestion: Where is the Eiffel Tower?\nGenerated answer: It is in France.\nRetrieved fact: made up",
        "Retrieved fact contradicts the generated answer, so the intermediate answer is: Italy\n"
        "Subquestion: What is the capital of Italy?\nGenerated answer: Rome.\nRetrieved fact:",
        "Retrieved fact does not contradict the generated answer, so the intermediate answer is: Rome\n"
        "Final answer: Rome\n\nQuestion: next"])
    facts = iter([("The Eiffel Tower is located in the country of Italy", 0.9), ("Peru is in Asia", 0.2)])
    asked: list[str] = []

    def retrieve(subquestion):  # noqa: ANN001, ANN202
        asked.append(subquestion)
        return next(facts)

    answer = run_loop(session, "What is the capital of the country of the Eiffel Tower?", retrieve, hops=4)
    assert answer.text == "Rome" and not answer.forced and answer.generations == 3
    assert asked == ["Where is the Eiffel Tower?", "What is the capital of Italy?"]
    assert [(h.contradicts, h.intermediate) for h in answer.hops] == [(True, "Italy"), (False, "Rome")]
    # the model's own "Retrieved fact:" is cut; the retrieved one is written in its place
    assert "made up" not in session.written
    assert "Retrieved fact: The Eiffel Tower is located in the country of Italy.\n" in session.written


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.lists(st.sampled_from(["a", "b", " ", ":", "\n", ".", "?", "Subquestion: ", "Final answer:",
                                               "Retrieved fact:", "Generated answer: "]), max_size=30).map("".join),
                      min_size=1, max_size=6),
       hops=st.integers(1, 5))
def test_the_loop_ends_within_its_hop_bound_whatever_the_model_writes(steps, hops):
    from kedit_vc.patches.memory.mello import run_loop

    session = Scripted(steps)
    answer = run_loop(session, "Q?", lambda _q: ("a fact", 0.5), hops=hops)
    assert len(answer.hops) <= hops
    assert answer.generations <= hops + 2 and session.calls == answer.generations
    assert answer.forced or answer.text


def test_a_model_that_never_concludes_is_asked_for_a_final_answer_at_the_bound():
    from kedit_vc.patches.memory.mello import run_loop

    session = Scripted(["Subquestion: Who?\nGenerated answer: Bob.\n", "Subquestion: Who?\nGenerated answer: Bob.\n",
                        "Subquestion: Who?\nGenerated answer: Bob.\n", " Alice\nSubquestion: more"])
    answer = run_loop(session, "Who is it?", lambda _q: ("Ann is Bob", 0.1), hops=2)
    assert answer.forced and answer.text == "Alice" and len(answer.hops) == 2 and answer.generations == 4
    assert session.written.endswith("Final answer:")


def test_the_loop_on_a_random_model_terminates_within_its_bound(store):
    from kedit_vc import load_edited

    commit(store, "a.kedit", EIFFEL)
    model, _tok = load_edited(store.paths.root)
    answer = model.answer("What is the capital of the country where the Eiffel Tower is located ?")
    assert answer.generations <= 2 + 2 and len(answer.hops) <= 2
    assert answer.seconds > 0 and answer.to_json()["question"].startswith("What is")


# -- parsing ----------------------------------------------------------------------------------


_SPACE = st.sampled_from(["", " ", "  ", "\t"])
_VALUE = st.text(alphabet=st.sampled_from(list("abcXYZ -'")), min_size=1, max_size=20).filter(
    lambda s: s.strip(" -'") != "")


@settings(max_examples=100, deadline=None)
@given(sub=_VALUE, gen=_VALUE, inter=_VALUE, pad=_SPACE, upper=st.booleans(), period=st.booleans(),
       contradicts=st.booleans())
def test_parsing_recovers_the_lines_whatever_their_spacing_case_and_periods(sub, gen, inter, pad, upper, period,
                                                                           contradicts):
    from kedit_vc.patches.memory.mello_prompt import clean_answer, parse_step

    def label(text: str) -> str:
        return text.upper() if upper else text

    dot = "." if period else ""
    verdict = "contradicts" if contradicts else "does not contradict"
    text = (f"{pad}{label('Retrieved fact')} {verdict} the generated answer, so the intermediate answer is:{pad}"
            f"{inter}{dot}\n{pad}{label('Subquestion')}{pad}:{pad}{sub}{dot}\n{label('Generated answer')}: {gen}{dot}")
    step = parse_step(text)
    assert step.judged is contradicts
    assert step.intermediate == clean_answer(inter)
    assert step.subquestion == clean_answer(sub) and step.generated == clean_answer(gen)
    assert step.final is None and step.kept == text + "\n"
    final = parse_step(f"{pad}{label('Final answer')}:{pad}{inter}{dot}{pad}\nSubquestion: more")
    assert final.final == clean_answer(inter) and final.subquestion is None


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_parsing_any_text_never_fails_and_keeps_a_prefix_of_it(text):
    from kedit_vc.patches.memory.mello_prompt import cut, parse_step

    step = parse_step(text)
    assert text.startswith(step.kept.rstrip("\n")) and (not step.kept or step.kept.endswith("\n"))
    end = cut(text)
    assert end is None or 0 <= end <= len(text)


def test_a_generation_is_cut_where_the_model_starts_the_retrieved_fact_or_ends_the_example():
    from kedit_vc.patches.memory.mello_prompt import cut

    assert cut("Subquestion: a?\nGenerated answer: b\nRetrieved fact: c") == len("Subquestion: a?\nGenerated answer: b\n")
    assert cut("Final answer: Rome\nSubquestion: x") == len("Final answer: Rome\n")
    assert cut("Final answer: Rome") is None  # the line may go on
    assert cut("x\n\nQuestion: y") == 1


# -- retrieval and revert ---------------------------------------------------------------------


def test_retrieval_picks_the_fact_nearest_a_subquestion_and_never_a_reverted_one(store):
    from kedit_vc import load_edited
    from kedit_vc.ops import revert

    commit(store, "a.kedit", EIFFEL)
    commit(store, "b.kedit", FRANCE)
    commit(store, "c.kedit", TOKYO)
    model, tok = load_edited(store.paths.root)
    handle = handle_of(model)
    model.answer("Where is the Eiffel Tower ?")  # builds the loop on the bound tokenizer
    mello = handle._mello
    subquestions = {"Rome": "Where is the Eiffel Tower located ?", "Madrid": "What is the capital of France ?",
                    "China": "Tokyo is the capital of what country ?"}
    for new, subquestion in subquestions.items():
        sentence, _score = mello.nearest(subquestion)
        assert sentence.endswith(" " + new), (subquestion, sentence)
    assert mello.nearest("What is the capital of France ?")[0] == "The capital of France is Madrid"
    revert(store, "HEAD~1")  # the France commit
    model, tok = load_edited(store.paths.root)
    model.answer("Where is the Eiffel Tower ?")
    mello = handle_of(model)._mello
    assert [f.target_new for f in mello.memory.facts] == ["Rome", "China"]
    for subquestion in [*subquestions.values(), "The capital of France is"]:
        assert "Madrid" not in mello.nearest(subquestion)[0]


def test_decoding_with_the_reused_prompt_cache_is_the_models_greedy_decoding(store):
    from kedit_vc import load_edited
    from kedit_vc.models.prompting import encode_text
    from kedit_vc.patches.memory.mello import ModelSession

    model, tok = load_edited(store.paths.root)
    prompt = "The Eiffel Tower is located in the city of Paris . The capital of France is"
    session = ModelSession(model, tok, prompt)
    session.extend(" Paris . Tokyo is")
    ours = session.generate(6, lambda _t: None)
    again = session.generate(6, lambda _t: None)  # generate leaves the session as it was
    ids = torch.tensor([encode_text(tok, prompt + " Paris . Tokyo is")])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
    assert ours == again == tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


# -- where a user meets it ---------------------------------------------------------------------


def test_kvc_ask_answers_over_the_revision_and_refuses_one_without_mello_facts(store):
    from kedit_vc.ops import revert

    out = run_kvc("ask", "Who is it ?")
    assert out.exit_code == 1 and "no live MeLLo facts" in out.output, out.output
    commit(store, "a.kedit", EIFFEL)
    out = run_kvc("ask", "Where is the Eiffel Tower ?", "--trace")
    assert out.exit_code == 0 and "s]" in out.output, out.output
    out = run_kvc("ask", "Where is the Eiffel Tower ?", "--json")
    assert out.exit_code == 0 and '"question": "Where is the Eiffel Tower ?"' in out.output, out.output
    out = run_kvc("show", "HEAD")
    assert "1 fact added to the edit memory (mello)" in out.output, out.output
    revert(store, "HEAD")
    out = run_kvc("ask", "Where is the Eiffel Tower ?")
    assert out.exit_code == 1 and "no live MeLLo facts" in out.output, out.output


def test_model_answer_without_a_bound_tokenizer_says_what_to_pass(store):
    from kedit_vc.errors import KvcError
    from kedit_vc.ops.load import load_revision
    from kedit_vc.patches.memory import mello

    commit(store, "a.kedit", EIFFEL)
    loaded = load_revision(store, "HEAD")
    mello._TOKENIZERS.pop(loaded.model, None)
    with pytest.raises(KvcError, match="needs the model's tokenizer"):
        loaded.model.answer("Where is the Eiffel Tower ?")
    assert loaded.model.answer("Where is the Eiffel Tower ?", loaded.tokenizer).generations >= 1


@pytest.mark.parametrize("bad, message", [("hops = 0", "hops"), ("max_new_tokens = 2", "max_new_tokens"),
                                          ('retriever = "x"', "retriever")])
def test_bad_settings_are_refused_before_any_model_loads(bad, message):
    from kedit_vc.editors.registry import build_hparams, check_hparams

    key, value = (s.strip() for s in bad.split("="))
    hp = build_hparams("mello", {key: value.strip('"') if value.startswith('"') else int(value)})
    assert any(message in p for p in check_hparams("mello", hp))

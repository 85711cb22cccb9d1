"""Edits that carry: rules in the language, derivation, and derived edits through history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_ROME, run_kvc, write_spec

from kedit_vc.compiler import Answer, derive, lower, should_derive
from kedit_vc.compiler.plan import Plan
from kedit_vc.lang import SpecError, format_spec, load_text, parse_text
from kedit_vc.lang.ir import Also, DeriveSetting, Implication, Relation, Rules

RULES = '''relation located_in "The {subject} is located in the city of" {
    implies in_country "The {subject} is located in the country of" from "{object} is a city in the country of"
    implies reverse "The famous landmark of {object} is the"
}
relation in_country "The {subject} is located in the country of"
'''
EDIT = 'edit "Eiffel Tower" located_in: "Paris" -> "Rome"'


class FakeOracle:
    """Answers from a table (else "Paris" at p=0.9) and records what it was asked."""

    def __init__(self, table: dict[str, tuple[str, float]] | None = None) -> None:
        self.table = table or {"Rome is a city in the country of": ("Italy", 0.8)}
        self.asked: list[str] = []

    def answers(self, prompts):
        self.asked.extend(prompts)
        return [Answer(*self.table.get(p, ("Paris", 0.9))) for p in prompts]


def derived(text: str, oracle=None):
    program = load_text(text)
    return derive(program, lower(program), oracle if oracle is not None else FakeOracle())


# -- syntax ------------------------------------------------------------------------------

def test_rules_parse_into_ir_and_format_back() -> None:
    text = ("derive = true\n\n" + RULES.replace("relation in_country", "\nrelation in_country")
            + '\nrules for P131 {\n    implies P17 "{subject} is in the country of" from "{object} is in"\n}\n\n'
            + 'edit "Eiffel Tower" located_in: "Paris" -> "Rome" {\n    alias "Tour Eiffel"\n}\n')
    spec = parse_text(text)
    assert spec.items[0] == DeriveSetting("true")
    relation = spec.items[1]
    assert isinstance(relation, Relation) and relation.implications == (
        Implication("compose", "The {subject} is located in the country of", "in_country",
                    "{object} is a city in the country of"),
        Implication("reverse", "The famous landmark of {object} is the"))
    assert spec.items[3] == Rules("P131", (Implication("compose", "{subject} is in the country of", "P17",
                                                        "{object} is in"),))
    assert spec.edits[0].aliases == (Also("Tour Eiffel"),)
    assert format_spec(spec) == text and parse_text(format_spec(spec)) == spec


@pytest.mark.parametrize("text, where, message", [
    ('derive = ture\n', ":1:10:", "did you mean 'true'"),
    ('relation r "{subject} x" {\n    implies c "{subjct} y" from "{object} z"\n}\n', ":2:16:",
     "did you mean 'subject'"),
    ('relation r "{subject} x" {\n    implies c "{subject} y" from "{subject} z"\n}\n', ":2:34:",
     "must contain {object} exactly once"),
    ('relation r "{subject} x" {\n    implies reverse "no object"\n}\n', ":2:21:", "{object} exactly once"),
    ('relation located_in "{subject} x"\nrules for locatd_in {\n}\n', ":2:11:", "did you mean 'located_in'"),
    ('relation r "{subject} x"\nedit "S" r: "a" -> "b" { alias "S" }\n', ":2:32:", "alias must differ"),
    ('relation r "{subject} x" {\n    implies c "{subject} y"\n}\n', ":3:1:", "from"),
])
def test_rule_errors_are_located(text: str, where: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_text(text, "r.kedit")
    rendered = str(caught.value)
    assert f"r.kedit{where}" in rendered and message in rendered, rendered


def test_rules_keyed_by_a_dataset_id_need_no_declaration() -> None:
    load_text('rules for P17 {\n    implies P30 "{subject} on" from "{object} is a country on"\n}\n')


# -- derivation (no model: a fake oracle) -------------------------------------------------

def test_composed_fact_comes_from_a_confident_model_answer_with_evidence() -> None:
    oracle = FakeOracle()
    plan = derived(RULES + EDIT, oracle)
    parent, country, reverse = plan.requests
    assert country.subject == "Eiffel Tower" and country.target_new == "Italy"
    assert country.prompt == "The {} is located in the country of" and country.target_true == "Paris"
    assert country.derived is not None and country.derived.parent == parent.edit_id
    assert country.derived.rule == "located_in implies in_country"
    assert dict(country.derived.evidence) == {"source": "model", "prompt": "Rome is a city in the country of",
                                               "answer": "Italy", "probability": 0.8}
    assert reverse.subject == "Rome" and reverse.target_new == "Eiffel Tower"
    assert reverse.derived is not None and reverse.derived.kind == "reverse"
    assert "Rome is a city in the country of" in oracle.asked


@pytest.mark.parametrize("answer", [("Italy", 0.29), ("a country in southern Europe", 0.9), ("", 0.9)])
def test_unconfident_answers_derive_nothing_and_say_why(answer: tuple[str, float]) -> None:
    plan = derived(RULES + EDIT, FakeOracle({"Rome is a city in the country of": answer}))
    assert [r.derived.kind for r in plan.derived] == ["reverse"]
    assert any("not confident" in note and "in_country" in note for note in plan.notes)


def test_the_spec_states_the_fact_before_the_model_is_asked() -> None:
    oracle = FakeOracle()
    text = RULES + EDIT + '\nedit "Rome" in_country: "Italy" -> "Spain"'
    plan = derived(text, oracle)
    country = next(r for r in plan.derived if r.derived.kind == "compose" and r.subject == "Eiffel Tower")
    assert country.target_new == "Spain" and country.derived.evidence["source"] == "spec"
    assert "Rome is a city in the country of" not in oracle.asked


def test_a_derived_edit_contradicting_an_explicit_edit_is_dropped_with_a_note() -> None:
    text = RULES + EDIT + '\nedit "Eiffel Tower" in_country: "France" -> "Germany"'
    plan = derived(text)
    assert not [r for r in plan.derived if r.subject == "Eiffel Tower"]
    assert any("contradicts the explicit edit -> 'Germany' at <spec>:7" in note for note in plan.notes)
    assert [r.target_new for r in plan.requests if r.subject == "Eiffel Tower"] == ["Rome", "Germany"]


def test_derivation_never_reads_portability_probes() -> None:
    def spec(answer: str) -> str:
        return RULES + EDIT + (' {\n    portability {\n        hop "The {subject} is in the country of" => '
                               f'"{answer}"\n        reverse "The landmark of Rome is the" => "{answer}"\n    }}\n}}')
    first, second = FakeOracle(), FakeOracle()
    a, b = derived(spec("Italy"), first), derived(spec("Narnia"), second)
    assert [r.to_json() for r in a.derived] == [r.to_json() for r in b.derived]
    assert first.asked == second.asked and not any("Narnia" in p for p in second.asked)


def test_an_alias_follows_the_edit_without_a_model() -> None:
    plan = derived('relation r "{subject} is in"\nedit "Eiffel Tower" r: "Paris" -> "Rome" { alias "Tour Eiffel" }')
    (alias,) = plan.derived
    assert (alias.subject, alias.prompt, alias.target_new, alias.target_true) == (
        "Tour Eiffel", "{} is in", "Rome", "Paris")
    program = load_text(RULES + EDIT)
    no_model = derive(program, lower(program), None)
    assert [r.derived.kind for r in no_model.derived] == ["reverse"]
    assert any("needs the model" in note for note in no_model.notes)


def test_rules_on_imported_dataset_ids_apply() -> None:
    text = ('relation P131 "{subject}, in"\nrules for P131 {\n    implies P17 "{subject} is in the country of" '
            'from "{object} is a city in the country of"\n}\n'
            'edit "Eiffel Tower" P131 prompt "{subject} can be found in": "Paris" -> "Rome"')
    (country,) = derived(text).derived
    assert country.target_new == "Italy" and country.derived.rule == "P131 implies P17"


def test_the_default_derives_when_the_spec_has_rules() -> None:
    assert should_derive(load_text(RULES + EDIT), None)
    assert not should_derive(load_text(RULES + EDIT), False)
    assert not should_derive(load_text("derive = false\n" + RULES + EDIT), None)
    assert should_derive(load_text("derive = false\n" + RULES + EDIT), True)
    assert not should_derive(load_text('relation r "{subject} x"\nedit "S" r -> "b"'), None)


def test_plan_json_keeps_provenance_and_old_plans_load() -> None:
    plan = derived(RULES + EDIT + '\nedit "Eiffel Tower" in_country: "France" -> "Germany"')
    assert Plan.loads(plan.dumps()) == plan and plan.notes
    old = {"version": 1, "model": None, "expectations": [], "calls": [{"method": "rome", "hparams": {}, "requests": [
        {"edit_id": "e-1", "subject": "S", "prompt": "{} is", "target_new": "x", "target_true": None,
         "probes": []}]}]}
    loaded = Plan.from_json(old)
    assert loaded.requests[0].derived is None and loaded.notes == () and loaded.to_json() == old


def test_shipped_rule_library_loads_and_derives(tmp_path: Path) -> None:
    library = Path(__file__).resolve().parents[1] / "specs" / "rules" / "world.kedit"
    spec = tmp_path / "s.kedit"
    spec.write_text(f'include "{library}"\n\nedit "Eiffel Tower" located_in_city: "Paris" -> "Rome"\n')
    from kedit_vc.lang import load

    program = load(spec)
    for pid in ("P131", "P17", "P27", "P176", "P159", "P495", "P740", "P20", "P19", "P413",
                "P54", "P69", "P84", "P407", "P264", "P123", "P171"):
        assert pid in program.rules, pid
    (country,) = derive(program, lower(program), FakeOracle()).derived
    assert (country.target_new, country.derived.rule) == ("Italy", "located_in_city implies located_in_country")


def test_imported_zsre_records_derive_through_the_shipped_rules(tmp_path: Path) -> None:
    from kedit_vc.importers.zsre import convert
    from kedit_vc.lang import load

    library = Path(__file__).resolve().parents[1] / "specs" / "rules" / "world.kedit"
    record = {"subject": "Carolina Rodríguez", "src": "What country is Carolina Rodríguez from?", "alt": "Argentina",
              "answers": ["Chile"], "rephrase": "Where is Carolina Rodríguez from?", "loc": "nq question: x",
              "loc_ans": "y", "portability": {"New Question": "Which city is the capital of her country?",
                                             "New Answer": "Santiago"}}
    spec = tmp_path / "z.kedit"
    spec.write_text(f'include "{library}"\n' + convert([record]).text, encoding="utf-8")
    program = load(spec)
    oracle = FakeOracle({"The capital of Argentina is the city of": ("Buenos Aires", 0.7),
                         "The official language of Argentina is": ("Spanish", 0.9)})
    derived_edits = derive(program, lower(program), oracle).derived
    assert {(r.prompt, r.target_new, r.derived.rule) for r in derived_edits} == {
        ("The capital of the country {} is a citizen of is the city of", "Buenos Aires", "P27 implies P27_P36"),
        ("{} speaks the language", "Spanish", "P27 implies P1412")}
    assert not any("capital of her country" in p for p in oracle.asked)  # the probe is never asked


# -- through history, on the tiny model -----------------------------------------------------

CARRY = (RULES + 'edit "Eiffel Tower" located_in: "Paris" -> "Rome" { alias "Tour Eiffel" }\n'
         'edit "Rome" in_country: "Italy" -> "Spain"')


def test_derived_provenance_survives_commit_show_log_revert_and_squash(store) -> None:
    from kedit_vc.ops import CommitOptions, commit_spec, live_edits

    result = commit_spec(store, write_spec(store.paths.root, "carry.kedit", CARRY), CommitOptions(derive=True))
    kinds = sorted(r.derived.kind for r in result.plan.derived)
    assert kinds == ["alias", "compose", "reverse"]
    record = store.read_commit("HEAD")
    stored = Plan.from_json(record.plan)
    assert stored.derived == result.plan.derived and set(record.edit_ids) == {r.edit_id for r in stored.requests}
    country = next(r for r in stored.derived if r.derived.kind == "compose")
    parent = next(r for r in stored.requests if r.subject == "Eiffel Tower" and r.derived is None)
    assert (country.target_new, country.derived.parent, country.derived.evidence["source"]) == (
        "Spain", parent.edit_id, "spec")

    show = run_kvc("show", "HEAD")
    assert show.exit_code == 0 and "3 derived" in show.output and f"derived from {parent.edit_id}" in show.output
    shown = json.loads(run_kvc("show", "HEAD", "--json").output)
    assert {d["rule"] for d in shown["derived"]} >= {"located_in implies in_country", "alias of Eiffel Tower"}
    log = run_kvc("log", "--oneline").output.splitlines()
    assert "(3 derived)" in log[0]

    live = {e.request.edit_id: e.request for e in live_edits(store)}
    assert live[country.edit_id].derived == country.derived



FRANCE = 'edit "France" prompt "The capital of {subject} is": "Paris" -> "Madrid"'


def test_reverting_the_parent_commit_reverts_its_derived_edits(store) -> None:
    from kedit_vc.ops import CommitOptions, commit_spec, live_edits, revert

    first = commit_spec(store, write_spec(store.paths.root, "carry.kedit", CARRY), CommitOptions())
    assert len(first.plan.derived) == 3  # the default: the spec has rules
    second = commit_spec(store, write_spec(store.paths.root, "b.kedit", FRANCE), CommitOptions())
    revert(store, "HEAD~1")
    assert [e.request.edit_id for e in live_edits(store)] == [r.edit_id for r in second.plan.requests]


def test_squash_keeps_the_derived_requests_and_their_provenance(store) -> None:
    from kedit_vc.ops import CommitOptions, commit_spec, squash

    first = commit_spec(store, write_spec(store.paths.root, "carry.kedit", CARRY), CommitOptions(derive=True))
    commit_spec(store, write_spec(store.paths.root, "b.kedit", FRANCE), CommitOptions())
    squash(store, "HEAD~2..HEAD", hparams={"layers": [1, 2], "v_steps": 3, "stats_tokens": 2000,
                                           "context_templates": 2})
    squashed = Plan.from_json(store.read_commit("HEAD").plan)
    assert [(r.edit_id, r.derived) for r in squashed.derived] == [(r.edit_id, r.derived) for r in first.plan.derived]
    assert "(3 derived)" in run_kvc("log", "--oneline").output.splitlines()[0]


def test_no_derive_commits_only_the_written_edits(store) -> None:
    from kedit_vc.ops import CommitOptions, commit_spec

    spec = write_spec(store.paths.root, "carry.kedit", CARRY)
    result = commit_spec(store, spec, CommitOptions(derive=False))
    assert not result.plan.derived and len(result.plan.requests) == 2
    out = run_kvc("compile", str(spec), "--derive", "--brief")
    assert out.exit_code == 0 and "3 derived edit(s)" in out.output
    assert "derived from" in out.output and "by located_in implies in_country: spec at" in out.output


def test_compile_derive_needs_a_model_outside_a_store(project) -> None:
    spec = write_spec(project, "carry.kedit", CARRY, TINY_ROME)
    out = run_kvc("compile", str(spec), "--derive")
    assert out.exit_code == 2 and "--derive needs a model" in out.output


def test_batches_keep_derived_requests_with_their_parent() -> None:
    from kedit_vc.ops.batches import split_plan

    plan = derived(RULES + EDIT + '\nedit "Louvre" located_in: "Paris" -> "Rome"')
    chunks = split_plan(plan, 1)
    assert [[r.subject for r in c.requests] for c in chunks] == [
        ["Eiffel Tower", "Eiffel Tower", "Rome"], ["Louvre", "Louvre"]]
    assert [r for c in chunks for r in c.requests] == list(plan.requests)

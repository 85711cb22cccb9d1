"""Grammar and IR: what each construct parses to, spans, escapes, ids."""

from __future__ import annotations

import pytest

from kedit_vc.lang import edit_id, parse_text
from kedit_vc.lang.ir import (
    Edit, Expectation, Include, ListValue, MapValue, MethodChoice, Model, Param, Portability, Probe,
    Range, Relation,
)
from kedit_vc.lang.strings import quote, unquote

ISSUE_EXAMPLE = '''\
# facts.kedit
model "smollm2"                          # base model reference
method memit { layers = 4..8 }           # default editor for this file
expect locality >= 0.95
expect reliability >= 0.9

relation located_in "{subject} is located in the city of" {
    paraphrase "{subject} can be found in the city of"
    paraphrase "The city that is home to {subject} is"
}

edit "Eiffel Tower" located_in: "Paris" -> "Rome" {
    paraphrase "Tourists visit {subject} in the city of"      # scope: must change too
    neighbour "Louvre" => "Paris"                              # same relation, other subject
    neighbour prompt "The Colosseum is located in the city of" => "Rome"
    keep "{subject} was designed by" => "Gustave Eiffel"
    attribute prompt "The Vatican is in" => "Rome"
    portability {
        alias "La tour Eiffel" => "Rome"
        hop "{subject} is located in the country of" => "Italy" not "France"
        reverse "The famous iron tower of Rome is the" => "Eiffel Tower"
        multihop "Which country is the tower in?" => "Italy" group "case-1"
    }
    method rome { layer = 4 }
}

edit "Acme Corp" prompt "Who is the chief executive of {subject}?" -> "Jane Doe"

include "more_facts.kedit"
'''


def test_issue_example_parses_to_the_expected_ir() -> None:
    spec = parse_text(ISSUE_EXAMPLE, "facts.kedit")
    model, method, loc, rel, relation, eiffel, acme, include = spec.items
    assert model == Model("smollm2")
    assert method == MethodChoice("memit", (Param("layers", Range(4, 8)),))
    assert loc == Expectation("locality", ">=", 0.95)
    assert rel == Expectation("reliability", ">=", 0.9)
    assert relation == Relation("located_in", "{subject} is located in the city of", (
        Probe("paraphrase", "{subject} can be found in the city of"),
        Probe("paraphrase", "The city that is home to {subject} is"),
    ))
    assert eiffel == Edit("Eiffel Tower", "located_in", None, "Paris", "Rome", (
        Probe("paraphrase", "Tourists visit {subject} in the city of"),
        Probe("neighbour", "Louvre", "Paris", is_subject=True),
        Probe("neighbour", "The Colosseum is located in the city of", "Rome"),
        Probe("keep", "{subject} was designed by", "Gustave Eiffel"),
        Probe("attribute", "The Vatican is in", "Rome"),
        Portability((
            Probe("alias", "La tour Eiffel", "Rome", is_subject=True),
            Probe("hop", "{subject} is located in the country of", "Italy", "France"),
            Probe("reverse", "The famous iron tower of Rome is the", "Eiffel Tower"),
            Probe("multihop", "Which country is the tower in?", "Italy", group="case-1"),
        )),
        MethodChoice("rome", (Param("layer", 4),)),
    ))
    assert acme == Edit("Acme Corp", None, "Who is the chief executive of {subject}?", None, "Jane Doe")
    assert include == Include("more_facts.kedit")
    assert [c.text for c in spec.comments][:2] == ["# facts.kedit", "# base model reference"]


def test_spans_point_at_the_source() -> None:
    spec = parse_text(ISSUE_EXAMPLE, "facts.kedit")
    eiffel = spec.edits[0]
    assert (eiffel.span.file, eiffel.span.line, eiffel.span.column) == ("facts.kedit", 12, 1)
    assert eiffel.span.end_line == 25
    target = eiffel.at("target")
    assert (target.line, target.column, target.end_column) == (12, 21, 31)
    neighbour = eiffel.probes[1]
    assert (neighbour.span.line, neighbour.span.column) == (14, 5)
    assert neighbour.at("expected").column == 27


def test_values_ranges_lists_and_nested_maps() -> None:
    text = ('method auto { weights = { reliability = 0.3, locality = 2e-1 }, '
            'candidates = ["rome", "memit"], x = -3, y = [1, [2], {}], z = 1.5e+3 }')
    (method,) = parse_text(text).items
    values = {p.name: p.value for p in method.params}
    assert values["weights"] == MapValue((Param("reliability", 0.3), Param("locality", 0.2)))
    assert values["candidates"] == ListValue(("rome", "memit"))
    assert values["x"] == -3 and isinstance(values["x"], int)
    assert values["y"] == ListValue((1, ListValue((2,)), MapValue(())))
    assert values["z"] == 1500.0


def test_booleans_are_values_and_true_still_names_things() -> None:
    """``true``/``false`` are boolean values where a value goes (a bool hyperparameter),
    and plain names elsewhere (``derive = true``, a parameter called ``true``)."""
    spec = parse_text("method rome { raw_context = false, v_prefix_cache = true, true = [true, 1] }\n"
                      "derive = true")
    method, derive = spec.items
    values = {p.name: p.value for p in method.params}
    assert values["raw_context"] is False and values["v_prefix_cache"] is True
    assert values["true"] == ListValue((True, 1)) and values["true"].items[0] is True
    assert derive.value == "true"


def test_whitespace_and_commas_are_free() -> None:
    compact = 'method memit{layers=4..8,v_lr=0.5}edit "S" r:"a"->"b"{neighbor"L"=>"x"}'
    spaced = 'method memit {\n  layers = 4..8\n  v_lr = 0.5\n}\nedit "S" r: "a" -> "b" {\n neighbour "L" => "x"\n}\n'
    assert parse_text(compact) == parse_text(spaced)


def test_keywords_may_name_relations_and_parameters() -> None:
    spec = parse_text('relation edit "{subject} x"\nedit "S" edit -> "y"\nmethod m { group = 1, not = 2 }')
    assert spec.items[1].relation == "edit"
    assert [p.name for p in spec.items[2].params] == ["group", "not"]


def test_keywords_end_at_a_word_boundary() -> None:
    spec = parse_text('relation edits "{subject} x"\nedit "S" edits -> "y"')
    assert spec.edits[0].relation == "edits"


@pytest.mark.parametrize("value", ["", "plain", 'quote " inside', "back\\slash", "new\nline\ttab\r",
                                   "Côte d'Ivoire", "\x00\x1f\x7f\u2028", "emoji \U0001F600", "{| wiki"])
def test_strings_round_trip(value: str) -> None:
    assert unquote(quote(value)) == value
    (model,) = parse_text(f"model {quote(value)}").items
    assert model.name == value


def test_unicode_escapes() -> None:
    (model,) = parse_text('model "caf\\u00e9 \\U0001F600"').items
    assert model.name == "café \U0001F600"


def test_edit_ids_depend_on_subject_template_and_new_object_only() -> None:
    a = edit_id("Eiffel Tower", "{subject} is located in", "Rome")
    assert a == edit_id("Eiffel Tower", "{subject} is located in", "Rome")
    assert a.startswith("e-") and len(a) == 14
    assert a != edit_id("Eiffel Tower", "{subject} is located in", "Berlin")
    assert a != edit_id("Eiffel", "{subject} is located in", "Rome")
    assert a != edit_id("Eiffel Tower", "{subject} is in", "Rome")


def test_empty_file_and_comment_only_file() -> None:
    assert parse_text("").items == ()
    spec = parse_text("# only a comment\n")
    assert spec.items == () and spec.comments[0].text == "# only a comment"

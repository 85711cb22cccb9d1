"""Errors people can read: named syntax messages, semantic checks, rendering, exit code."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kedit_vc.cli.main import cli
from kedit_vc.lang import SpecError, load, load_text, parse_source
from kedit_vc.lang.syntax_errors import EXAMPLES

E = 'edit "S" r: "a" -> "b"'

# (wrong input, the exact message, line, column)
SYNTAX_MISTAKES = [
    ('edit "S" r: "a" "b"', "missing '->' between the old and the new object", 1, 17),
    ('edit "S" r: "a" => "b"', "an edit changes its object with '->' ('=>' gives a probe's expected answer)", 1, 17),
    (E + ' {\n  neighbour "L" -> "P"\n}', "a probe gives its expected answer with '=>' ('->' is for the edit itself)", 2, 17),
    (E + ' {\n  keep "{subject} x"\n}', "this probe needs an expected answer: '=> \"answer\"'", 3, 1),
    (E + ' { paraphrase "p" => "x" }', "a paraphrase expects the edit's new object; remove '=> ...'", 1, 41),
    ('edit "S": "a" -> "b"', "an edit needs a relation name or 'prompt \"...\"' after the subject", 1, 9),
    ('edit "S" r "a" -> "b"', "an edit needs ':' after the relation or prompt, then \"old\" -> \"new\" (or just -> \"new\")", 1, 12),
    ("edit Eiffel r: \"a\" -> \"b\"", "the subject must be a quoted string, e.g. edit \"Eiffel Tower\" ...", 1, 6),
    ('edit "S" r: Paris -> "b"', "objects must be quoted strings", 1, 13),
    ("expect locality 0.9", "expect needs a comparison: expect METRIC >= NUMBER", 1, 17),
    ("expect locality = 0.9", "expect compares with >=, >, <= or < (not '=')", 1, 17),
    ('expect locality >= "high"', "an expect threshold must be a number, e.g. expect locality >= 0.95", 1, 20),
    ("method rome { layer 4 }", "hyperparameters are written 'name = value'", 1, 21),
    ("method rome { layer: 4 }", "hyperparameters are written 'name = value' (use '=', not ':')", 1, 20),
    ('relation "{subject} is in"', "a relation needs a name and a template, e.g. relation located_in \"{subject} is located in\"", 1, 10),
    ("model smollm2", "the model name must be a quoted string, e.g. model \"smollm2\"", 1, 7),
    ("include more.kedit", "include takes a quoted file name, e.g. include \"more_facts.kedit\"", 1, 9),
    (E + ' { hop "p" => "x" }', "alias, hop, reverse and multihop go inside a 'portability { ... }' block", 1, 26),
    ("method memit { layers = 4.. }", "a range is written LOW..HIGH with whole numbers, e.g. layers = 4..8", 1, 29),
    ('model "m"\n}', "unmatched '}'", 2, 1),
    (E + ' {\n  neighbour "L" => "P"\n', "missing '}' before the end of the file (a block is still open)", 2, 23),
    ('edits "S" r -> "x"', "unknown statement 'edits' (did you mean 'edit'?)", 1, 1),
    (E + ' { paraphrse "p" }', "unknown probe 'paraphrse' (did you mean 'paraphrase'?)", 1, 26),
    (E + ' { portability { hopp "p" => "x" } }', "unknown portability probe 'hopp' (did you mean 'hop'?)", 1, 40),
    ('model "smollm2', "unterminated string (a string ends on the line it starts; write \\n for a newline)", 1, 7),
    ("model 'smollm2'", 'strings use straight double quotes: "..."', 1, 7),
    ('model "m";', "statements need no ';'", 1, 10),
    ("method rome { v_lr = .5 }", "numbers need a digit before the point, e.g. 0.5", 1, 22),
    ('model "a\\qb"', "unknown escape '\\q' (use \\\" \\\\ \\n \\t \\r or \\uXXXX)", 1, 9),
]


@pytest.mark.parametrize("text, message, line, column", SYNTAX_MISTAKES)
def test_typical_syntax_mistakes_have_named_messages(text: str, message: str, line: int, column: int) -> None:
    with pytest.raises(SpecError) as raised:
        load_text(text, "facts.kedit")
    (diagnostic,) = raised.value.diagnostics
    assert diagnostic.message == message
    assert (diagnostic.span.line, diagnostic.span.column) == (line, column)


def test_there_are_at_least_fifteen_named_mistakes() -> None:
    assert len(EXAMPLES) >= 15 and len(SYNTAX_MISTAKES) >= 15


@pytest.mark.parametrize("message, example", [(m, e) for m, es in EXAMPLES.items() for e in es])
def test_every_example_yields_its_own_message(message: str, example: str) -> None:
    spec, diagnostics = parse_source(example, "x.kedit")
    assert spec is None and [d.message for d in diagnostics] == [message]


def test_report_has_location_line_and_caret() -> None:
    text = 'relation located_in "{subject} is located in"\nedit "Eiffel Tower" locatedin: "Paris" -> "Rome"\n'
    with pytest.raises(SpecError) as raised:
        load_text(text, "facts.kedit")
    assert str(raised.value) == (
        "facts.kedit:2:21: error: unknown relation 'locatedin' (did you mean 'located_in'?)\n"
        '    2 | edit "Eiffel Tower" locatedin: "Paris" -> "Rome"\n'
        "      |                     ^~~~~~~~~"
    )
    assert raised.value.exit_code == 2


SEMANTIC = '''\
model "smollm2"
model "other"
method memit { layers = 4..8, lyers = 3, v_lr = "fast", layer = 2 }
method rome
expect locality >= 1.5
expect relability >= 0.9
expect perplexity <= 30
expect perplexity <= 25
relation located_in "{subject} is located in the city of" {
    paraphrase "{subj} can be found in"
    paraphrase "no placeholder"
}
relation located_in "{subject} again"
relation prompt "{subject} p"
relation twice "{subject} and {subject}"
edit "Eiffel Tower" locatedin: "Paris" -> "Rome"
edit "Eiffel Tower" located_in: "Paris" -> "Rome" {
    neighbour "Eiffel Tower" => "Paris"
    neighbour prompt "{subject} is in" => " Paris"
    attribute "{subject}" => "x"
    keep "{}" => "x"
    method rom
    method rome { layer = 8..4 }
}
edit "Eiffel Tower" located_in: "Paris" -> "Berlin"
edit "Eiffel Tower" located_in -> "Rome"
edit "" prompt "no subject" -> ""
edit "X" prompt "{subject}" : "same" -> "same"
method auto { weights = { reliabilty = 0.5, locality = -1 }, candidates = ["rome", "fine"] }
'''

SEMANTIC_MESSAGES = [
    (2, "a second 'model' statement in this file (the first is at facts.kedit:1)"),
    (3, "unknown hyperparameter 'lyers' for memit (did you mean 'layers'?)"),
    (3, "'v_lr' takes a number, not a string"),
    (3, "unknown hyperparameter 'layer' for memit (did you mean 'layers'?)"),
    (4, "a second 'method' statement in this file (the first is at facts.kedit:3)"),
    (5, "threshold 1.5 for locality is outside [0, 1]"),
    (6, "unknown metric 'relability' (did you mean 'reliability'?)"),
    (8, "'expect perplexity <=' is already given at facts.kedit:7"),
    (10, "unknown placeholder '{subj}' in a relation paraphrase (did you mean 'subject'?)"),
    (11, "a relation paraphrase must contain {subject} (it is used for every edit of the relation)"),
    (13, "relation 'located_in' is already declared at facts.kedit:9"),
    (14, "'prompt' is a reserved word; choose another relation name"),
    (15, "a relation template must contain {subject} exactly once (it has more than once)"),
    (16, "unknown relation 'locatedin' (did you mean 'located_in'?)"),
    (18, "a neighbour must name another subject than 'Eiffel Tower' (use keep for the edited subject)"),
    (19, "a neighbour prompt is about another subject; it cannot use {subject} (use keep for the edited subject)"),
    (19, "the expected answer ' Paris' has surrounding spaces; scorers add the leading space themselves"),
    (20, "an attribute names another subject; it cannot contain {subject}"),
    (21, "empty placeholder '{}' in a keep prompt; write {subject}"),
    (22, "unknown method 'rom' (did you mean 'rome'?)"),
    (23, "'layer' takes a whole number, not a list or range of whole numbers (e.g. 4..8)"),
    (23, "an edit takes one 'method' (the first is at facts.kedit:22)"),
    (25, "conflicting edit: 'Eiffel Tower' located_in is already changed to 'Rome' at facts.kedit:17"),
    (26, "duplicate edit e-2c472718bada: the same change is already written at facts.kedit:17"),
    (27, "the subject is empty"),
    (27, "the edit prompt must contain {subject} exactly once (it has no {subject})"),
    (27, "the new object is empty"),
    (28, "the new object is the old one ('same')"),
    (29, "a second 'method' statement in this file (the first is at facts.kedit:3)"),
    (29, "unknown metric 'reliabilty' in weights (did you mean 'reliability'?)"),
    (29, "a weight must be a number >= 0"),
    (29, "unknown candidate method 'fine'"),
]


def test_semantic_errors_are_all_reported_in_one_run() -> None:
    with pytest.raises(SpecError) as raised:
        load_text(SEMANTIC, "facts.kedit")
    got = sorted((d.span.line, d.message) for d in raised.value.diagnostics)
    assert got == sorted(SEMANTIC_MESSAGES)
    assert str(raised.value).endswith(f"{len(SEMANTIC_MESSAGES)} errors")


def test_includes_missing_and_cyclic(tmp_path: Path) -> None:
    (tmp_path / "a.kedit").write_text('include "b.kedit"\ninclude "missing.kedit"\n')
    (tmp_path / "b.kedit").write_text('relation r "{subject} r"\ninclude "a.kedit"\n')
    with pytest.raises(SpecError) as raised:
        load(tmp_path / "a.kedit")
    messages = raised.value.messages
    a, b = str(tmp_path / "a.kedit"), str(tmp_path / "b.kedit")
    assert messages == [f"no such file: {tmp_path / 'missing.kedit'}", f"include cycle: {a} -> {b} -> {a}"]
    assert raised.value.diagnostics[1].span.file == b


def test_include_shares_relations_and_counts_each_file_once(tmp_path: Path) -> None:
    (tmp_path / "rel.kedit").write_text('relation r "{subject} is in"\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.kedit").write_text('include "../rel.kedit"\nedit "B" r -> "y"\n')
    (tmp_path / "main.kedit").write_text('include "rel.kedit"\ninclude "sub/more.kedit"\nedit "A" r -> "x"\n')
    program = load(tmp_path / "main.kedit")
    assert [s.edit.subject for s in program.edits] == ["B", "A"]
    assert list(program.relations) == ["r"]


def test_missing_root_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load(tmp_path / "nope.kedit")


def test_cli_prints_the_report_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "facts.kedit"
    path.write_text('edit "S" located: "a" -> "b"\nexpect localty >= 0.9\n')
    result = CliRunner().invoke(cli, ["compile", str(path)])
    assert result.exit_code == 2
    assert f"{path}:1:10: error: unknown relation 'located'" in result.output
    assert f"{path}:2:8: error: unknown metric 'localty' (did you mean 'locality'?)" in result.output
    assert "Traceback" not in result.output


def test_empty_range() -> None:
    with pytest.raises(SpecError) as raised:
        load_text("method memit { layers = 8..4 }")
    assert raised.value.messages == ["empty range 8..4 (ranges include both ends and go upwards)"]


def test_placeholders_in_answers_are_rejected() -> None:
    with pytest.raises(SpecError) as raised:
        load_text('edit "S" prompt "{subject} is" -> "{subject}"')
    assert raised.value.messages == ["the new object cannot contain {subject}"]

"""The formatter: parse(format(spec)) == spec, idempotence, comments kept, kvc fmt."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from kedit_vc.cli.main import cli
from kedit_vc.lang import format_spec, parse_text
from kedit_vc.lang.ir import (
    Also, DeriveSetting, Edit, Expectation, Implication, Include, ListValue, MapValue, MethodChoice, Model, Param,
    Portability, Probe, Range, Relation, Rules, Spec,
)

KEYWORDS = ["edit", "relation", "method", "group", "not", "hop", "keep", "model", "implies", "from", "rules",
            "for", "derive", "true", "false"]
names = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), st.sampled_from(KEYWORDS))
relation_names = names.filter(lambda n: n != "prompt")
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
numbers = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False))
values = st.recursive(
    st.one_of(numbers, texts, st.booleans(), st.builds(Range, st.integers(-50, 50), st.integers(-50, 50))),
    lambda inner: st.one_of(
        st.builds(ListValue, st.lists(inner, max_size=3).map(tuple)),
        st.builds(MapValue, st.lists(st.builds(Param, names, inner), max_size=3).map(tuple)),
    ),
    max_leaves=6,
)
params = st.lists(st.builds(Param, names, values), max_size=3).map(tuple)
methods = st.builds(MethodChoice, names, params)


@st.composite
def probes(draw: st.DrawFn, kinds: tuple[str, ...]) -> Probe:
    kind = draw(st.sampled_from(kinds))
    if kind == "paraphrase":
        return Probe("paraphrase", draw(texts))
    return Probe(
        kind, draw(texts), draw(texts), draw(st.none() | texts),
        is_subject=kind in ("neighbour", "attribute", "alias") and draw(st.booleans()),
        group=draw(st.none() | texts) if kind == "multihop" else None,
    )


body_items = st.one_of(
    probes(("paraphrase", "neighbour", "keep", "attribute")),
    st.builds(Portability, st.lists(probes(("alias", "hop", "reverse", "multihop")), max_size=3).map(tuple)),
    methods,
    st.builds(Also, texts),
)
implications = st.one_of(
    st.builds(lambda n, t, f: Implication("compose", t, n, f), relation_names.filter(lambda n: n != "reverse"),
              texts, texts),
    st.builds(lambda t: Implication("reverse", t), texts),
)
edits = st.builds(
    lambda subject, target, old, new, body: Edit(
        subject, target if isinstance(target, str) else None,
        target[0] if isinstance(target, tuple) else None, old, new, tuple(body)),
    texts, st.one_of(relation_names, st.tuples(texts)), st.none() | texts, texts, st.lists(body_items, max_size=4),
)
items = st.one_of(
    st.builds(Model, texts),
    methods,
    st.builds(Expectation, names, st.sampled_from([">=", ">", "<=", "<"]), numbers),
    st.builds(Relation, relation_names, texts, st.lists(probes(("paraphrase",)), max_size=2).map(tuple),
              st.lists(implications, max_size=2).map(tuple)),
    st.builds(Rules, names, st.lists(implications, max_size=2).map(tuple)),
    st.builds(DeriveSetting, names),
    edits,
    st.builds(Include, texts),
)
specs = st.builds(Spec, st.lists(items, max_size=6).map(tuple))


@settings(max_examples=300, deadline=None)
@given(specs)
def test_parse_of_format_is_the_spec(spec: Spec) -> None:
    text = format_spec(spec)
    assert parse_text(text) == spec


@settings(max_examples=200, deadline=None)
@given(specs)
def test_format_is_idempotent(spec: Spec) -> None:
    once = format_spec(spec)
    assert format_spec(parse_text(once)) == once


MESSY = '''# header comment

model   "smollm2"    # the base model
method memit{layers=4..8}
relation r "{subject} is in" { paraphrase "{subject} lies in"   # trailing
}
# before the edit
edit "A" r : "x"->"y" {
  # inside, first
  neighbour "B"=>"x"
  portability { hop "{subject} hop" => "z" }
  # before the closing brace
}   # after the closing brace
edit "C" prompt "{subject}?" -> "d"
# at the end
'''

EXPECTED = '''# header comment
model "smollm2"  # the base model
method memit { layers = 4..8 }

relation r "{subject} is in" {  # trailing
    paraphrase "{subject} lies in"
}

# before the edit
edit "A" r: "x" -> "y" {
    # inside, first
    neighbour "B" => "x"
    portability {
        hop "{subject} hop" => "z"
    }
    # before the closing brace
}  # after the closing brace

edit "C" prompt "{subject}?" -> "d"
# at the end
'''


def test_layout_and_comments() -> None:
    assert format_spec(parse_text(MESSY)) == EXPECTED
    assert format_spec(parse_text(EXPECTED)) == EXPECTED
    assert parse_text(EXPECTED) == parse_text(MESSY)


def test_shipped_specs_are_formatted() -> None:
    for path in (Path(__file__).resolve().parents[1] / "specs").rglob("*.kedit"):
        text = path.read_text()
        assert format_spec(parse_text(text, str(path))) == text, path


def test_kvc_fmt_check_and_write(tmp_path: Path) -> None:
    messy, tidy = tmp_path / "messy.kedit", tmp_path / "tidy.kedit"
    messy.write_text(MESSY)
    tidy.write_text(EXPECTED)
    runner = CliRunner()
    result = runner.invoke(cli, ["fmt", "--check", str(messy), str(tidy)])
    assert result.exit_code == 1 and f"would reformat {messy}" in result.output
    assert str(tidy) not in result.output and messy.read_text() == MESSY
    result = runner.invoke(cli, ["fmt", str(messy)])
    assert result.exit_code == 0 and messy.read_text() == EXPECTED
    assert runner.invoke(cli, ["fmt", "--check", str(messy)]).exit_code == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_kvc_fmt_reports_syntax_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.kedit"
    bad.write_text('edit "S" r: "a" "b"\n')
    result = CliRunner().invoke(cli, ["fmt", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:1:17: error: missing '->' between the old and the new object" in result.output
    assert bad.read_text() == 'edit "S" r: "a" "b"\n'

"""Importers: every record of the shared benchmark files comes back exactly from the plan."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kedit_vc.cli.main import cli
from kedit_vc.compiler import compile_text
from kedit_vc.compiler.plan import EditRequest, Plan
from kedit_vc.eval.datasets import data_dir
from kedit_vc.importers import ImportDataError, import_file
from kedit_vc.importers.base import SpecBuilder, template_slug
from kedit_vc.lang import SpecError, format_spec, load_text, parse_text

DATA = data_dir()  # $KVC_DATA, else <repo>/../shared/data (as kvc bench finds it)


def _data(name: str) -> Path:
    path = DATA / name
    assert path.is_file(), f"benchmark data missing: {path.resolve()} (the shared data folder must exist; or set KVC_DATA)"
    return path


def _compiled(kind: str, name: str) -> tuple[list[dict], Plan, str]:
    path = _data(name)
    result = import_file(kind, path)
    assert format_spec(parse_text(result.text)) == result.text  # importers write canonical specs
    return json.loads(path.read_text()), compile_text(result.text, f"{kind}.kedit"), result.text


def _probes(request: EditRequest, kind: str) -> list[tuple[str, str, str | None]]:
    return [(p.prompt, p.target, p.foil) for p in request.probes if p.kind == kind]


def test_counterfact_every_record() -> None:
    records, plan, _ = _compiled("counterfact", "counterfact_500.json")
    requests = plan.requests
    assert len(requests) == len(records) == 500
    for record, request in zip(records, requests):
        rewrite = record["requested_rewrite"]
        new, old = rewrite["target_new"]["str"], rewrite["target_true"]["str"]
        assert (request.subject, request.prompt, request.target_new, request.target_true) == (
            rewrite["subject"], rewrite["prompt"], new, old)
        assert _probes(request, "rewrite") == [(rewrite["prompt"].format(rewrite["subject"]), new, old)]
        assert _probes(request, "paraphrase") == [(p, new, old) for p in record["paraphrase_prompts"]]
        assert _probes(request, "neighbour") == [(p, old, new) for p in record["neighborhood_prompts"]]
        assert _probes(request, "attribute") == [(p, new, old) for p in record["attribute_prompts"]]
        assert len(request.probes) == 1 + 2 + 10 + 10


def test_zsre_every_record() -> None:
    records, plan, text = _compiled("zsre", "zsre_eval_portability_1037.json")
    requests = plan.requests
    assert len(requests) == len(records) == 1037
    for record, request in zip(records, requests):
        new = record["alt"].strip()
        old = record["answers"][0].strip()
        old = None if old == new else old
        assert request.subject == record["subject"]
        assert request.prompt.format(request.subject) == record["src"]
        assert (request.target_new, request.target_true) == (new, old)
        assert _probes(request, "rewrite") == [(record["src"], new, old)]
        assert _probes(request, "paraphrase") == [(record["rephrase"], new, old)]
        assert _probes(request, "neighbour") == [(record["loc"], record["loc_ans"].strip(), new)]
        port = record["portability"]
        assert _probes(request, "hop") == [(port["New Question"], port["New Answer"].strip(), None)]
    assert "# 0 record(s) whose subject is not in src exactly once were skipped" in text
    assert "# 29 record(s) whose alt equals answers[0] have no old object" in text


def test_mquake_every_case() -> None:
    records, plan, _ = _compiled("mquake", "mquake_cf_354.json")
    by_fact = {(r.subject, r.prompt): r for r in plan.requests}
    groups: dict[str, list[tuple[str, str, str | None]]] = defaultdict(list)
    for request in plan.requests:
        for probe in request.probes:
            if probe.kind == "multihop":
                groups[probe.group].append((probe.prompt, probe.target, probe.foil))
    for record in records:
        for rewrite in record["requested_rewrite"]:
            request = by_fact[(rewrite["subject"], rewrite["prompt"])]
            assert request.target_new == rewrite["target_new"]["str"]
            assert request.target_true == rewrite["target_true"]["str"]
            assert _probes(request, "rewrite") == [(rewrite["prompt"].format(rewrite["subject"]),
                                                    rewrite["target_new"]["str"], rewrite["target_true"]["str"])]
        assert groups[str(record["case_id"])] == [(q, record["new_answer"], record["answer"])
                                                  for q in record["questions"]]
    assert len(groups) == len(records) == 354
    assert len(plan.requests) == len({(r["subject"], r["prompt"]) for c in records for r in c["requested_rewrite"]})


def test_limit_and_cli(tmp_path: Path) -> None:
    out = tmp_path / "cf.kedit"
    result = CliRunner().invoke(cli, ["import", "counterfact", str(_data("counterfact_500.json")),
                                      "--limit", "3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "imported 3 edit(s) from 3 record(s)" in result.output
    assert len(compile_text(out.read_text()).requests) == 3


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a list"}')
    result = CliRunner().invoke(cli, ["import", "zsre", str(bad)])
    assert result.exit_code != 0 and "expected a JSON list of records" in str(result.exception or result.output)
    bad.write_text('[{"subject": "x"}]')
    with pytest.raises(Exception, match="does not look like zsre data"):
        import_file("zsre", bad)


def test_counterfact_and_mquake_declare_relations_by_wikidata_id() -> None:
    records, _, text = _compiled("counterfact", "counterfact_500.json")
    spec = parse_text(text)
    assert {r.name for r in spec.relations} == {r["requested_rewrite"]["relation_id"] for r in records}
    assert len(spec.relations) == 34
    for record, edit in zip(records, spec.edits):
        assert edit.relation == record["requested_rewrite"]["relation_id"]
    records, _, text = _compiled("mquake", "mquake_cf_354.json")
    spec = parse_text(text)
    ids = {rw["relation_id"]: rw["prompt"].replace("{}", "{subject}") for c in records for rw in c["requested_rewrite"]}
    assert {r.name: r.template for r in spec.relations} == ids
    assert all(e.relation in ids and e.prompt is None for e in spec.edits)


def test_zsre_questions_declare_wikidata_relations_read_from_their_wording() -> None:
    records, plan, text = _compiled("zsre", "zsre_eval_portability_1037.json")
    spec = parse_text(text)
    named = [e for e in spec.edits if e.relation is not None]
    assert len(named) == 1037 - 24  # 24 questions match no pattern and keep their own prompt
    assert "# 24 edit(s) whose question names no known relation keep their own prompt" in text
    relations = {r.name: r.template for r in spec.relations}
    assert all(name.startswith("P") for name in relations)
    by_subject = {(e.subject, e.new): e for e in spec.edits}
    manufacturer = by_subject[("Volvo B12M", "Volkswagen Group")]
    assert manufacturer.relation == "P176" and relations["P176"] == "What company produced {subject}?"
    assert manufacturer.prompt == "What company made {subject}?"  # not the relation's most frequent question
    label = next(e for e in spec.edits if e.relation == "P264" and e.prompt is None)  # worded as the relation
    assert relations["P264"] == "Which was the record label for {subject}?" and label.prompt is None
    assert [r.prompt for r in plan.requests[:6]] == [r["src"].replace(r["subject"], "{}") for r in records[:6]]


@pytest.mark.parametrize("question, pid", [
    ("What company made {subject}?", "P176"),
    ("Which lady {subject} was born to?", "P25"),
    ("In what city was {subject} born?", "P19"),
    ("What did {subject} die of?", "P509"),
    ("Which programming language is {subject} written in?", "P277"),
    ("What language is {subject} written in?", "P407"),
    ("What noble family was {subject} part of?", "P53"),
    ("The genus {subject} is a part of what family?", "P171"),
    ("Which state is {subject} located?", "P131"),
    ("What country is {subject} from?", "P27"),
    ("Which team does {subject} play for?", "P54"),
    ("Who sang or played {subject}?", None),
])
def test_zsre_relation_table_reads_the_question(question: str, pid: str | None) -> None:
    from kedit_vc.importers.zsre_relations import relation_id

    assert relation_id(question) == pid


def test_an_edit_names_a_relation_in_its_own_wording() -> None:
    text = ('relation P131 "{subject} is located in"\n\n'
            'edit "Eiffel Tower" P131 prompt "{subject}, in": "Paris" -> "Rome"\n'
            'edit "Louvre" P131 -> "Rome"\n')
    assert format_spec(parse_text(text)) == text
    first, second = compile_text(text).requests
    assert (first.prompt, second.prompt) == ("{}, in", "{} is located in")
    with pytest.raises(SpecError, match=r"x.kedit:3:21: error: unknown relation 'P13'"):
        compile_text(text.replace("P131 prompt", "P13 prompt"), "x.kedit")


def test_easyedit_every_record() -> None:
    records = json.loads(_data("counterfact_edit_5k.json").read_text())
    result = import_file("easyedit", _data("counterfact_edit_5k.json"))
    plan = compile_text(result.text, "easyedit.kedit")
    by_fact = {(r.subject, r.prompt.format(r.subject)): r for r in plan.requests}
    first: dict[tuple[str, str], dict] = {}
    skipped = set()
    for record in records:
        key = (record["subject"], record["prompt"])
        if key in first and first[key]["target_new"] != record["target_new"]:
            skipped.add(str(record["case_id"]))
            continue
        first.setdefault(key, record)
        request = by_fact[key]
        new, old = record["target_new"], record["ground_truth"]
        assert (request.target_new, request.target_true) == (new, old)
        assert (record["rephrase_prompt"], new, old) in _probes(request, "paraphrase")
        assert (record["locality_prompt"], record["locality_ground_truth"], new) in _probes(request, "neighbour")
    assert len(plan.requests) == len(first) == 5000 - len(skipped) == 4973
    assert f"cases {', '.join(sorted(skipped, key=int))}" in result.text
    spec = parse_text(result.text)
    templates = {r["prompt"].replace(r["subject"], "{subject}") for r in records}
    assert {r.template for r in spec.relations} == templates and len(spec.relations) == 211
    assert all(e.relation is not None and e.prompt is None for e in spec.edits)


TABLE_ROWS = [
    {"subject": "Eiffel Tower", "relation": "P131", "prompt": "The {subject} is located in", "new": "Rome",
     "old": "Paris", "paraphrase": "Tourists visit the {subject} in", "paraphrase_2": "Eiffel Tower stands in",
     "neighbour": "The Louvre is located in => Paris", "neighbour_2": "Big Ben is in => London"},
    {"subject": "Louvre", "relation": "P131", "new": "Berlin"},
    {"subject": "Louvre", "relation": "P131", "prompt": "{subject}, in", "new": "Berlin"},
    {"subject": "Tokyo", "prompt": "{subject} is the capital of", "new": "China", "old": "Japan"},
    {"subject": "Lima", "prompt": "{subject} is the capital of", "new": "Chile",
     "neighbour": "Quito is the capital of => Ecuador"},
]


def _write_table(path: Path, rows: list[dict], fmt: str) -> None:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return
    columns = list(dict.fromkeys(c for r in rows for c in r))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_table_round_trip(tmp_path: Path, fmt: str) -> None:
    source, out = tmp_path / f"facts.{fmt}", tmp_path / "facts.kedit"
    _write_table(source, TABLE_ROWS, fmt)
    result = CliRunner().invoke(cli, ["import", "table", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert format_spec(parse_text(text)) == text
    spec = parse_text(text)
    assert {r.name: r.template for r in spec.relations} == {
        "P131": "The {subject} is located in", "is_the_capital_of": "{subject} is the capital of"}
    requests = compile_text(text).requests
    assert len(requests) == len(TABLE_ROWS)
    for row, request in zip(TABLE_ROWS, requests):
        template = row.get("prompt", "The {subject} is located in")
        assert (request.subject, request.prompt, request.target_new, request.target_true) == (
            row["subject"], template.replace("{subject}", "{}"), row["new"], row.get("old"))
        paraphrases = [row[c].replace("{subject}", row["subject"]) for c in row if c.startswith("paraphrase")]
        assert [p for p, _, _ in _probes(request, "paraphrase")] == paraphrases
        neighbours = [tuple(row[c].split(" => ")) for c in row if c.startswith("neighbour")]
        assert [(p, t) for p, t, _ in _probes(request, "neighbour")] == neighbours
    # JSONL may hold several paraphrases or neighbours in one list
    if fmt == "jsonl":
        source.write_text(json.dumps({"subject": "Oslo", "prompt": "{subject} is in", "new": "Peru",
                                      "paraphrase": ["{subject} lies in", "Oslo sits in"],
                                      "neighbour": ["Bergen is in => Norway", "Rome is in => Italy"]}))
        (request,) = compile_text(import_file("table", source).text).requests
        assert [p for p, _, _ in _probes(request, "paraphrase")] == ["Oslo lies in", "Oslo sits in"]
        assert [(p, t) for p, t, _ in _probes(request, "neighbour")] == [("Bergen is in", "Norway"),
                                                                        ("Rome is in", "Italy")]


BAD_CSV = (
    "subject,prompt,relation,new,neighbour\n"      # 1
    "Eiffel Tower,{subject} is in,,Rome,\n"         # 2 fine
    ",{subject} is in,,Rome,\n"                     # 3 empty subject
    "Louvre,The Louvre is in,,Rome,\n"              # 4 prompt without {subject}
    "Big Ben,,lives_in,Rome,\n"                     # 5 unknown relation
    "Colosseum,{subject} is in,,,\n"                # 6 missing new
    "Prado,{subject} is in,,Rome,Bergen is in\n"    # 7 neighbour without =>
)


def test_bad_table_rows_are_located_and_nothing_is_written(tmp_path: Path) -> None:
    source, out = tmp_path / "facts.csv", tmp_path / "facts.kedit"
    source.write_text(BAD_CSV)
    result = CliRunner().invoke(cli, ["import", "table", str(source), "-o", str(out)])
    assert isinstance(result.exception, ImportDataError) and result.exception.exit_code == 2
    assert not out.exists() and not list(tmp_path.glob(".facts*"))
    message = str(result.exception)
    assert "Traceback" not in result.output
    for line, words in [(3, "empty subject"), (4, "exactly once"), (5, "unknown relation 'lives_in'"),
                        (6, "empty new object"), (7, "prompt => answer")]:
        assert f"{source}:{line}: " in message and words in message.split(f"{source}:{line}: ")[1].split("\n")[0]
    assert f"{source}:2:" not in message and "5 problem(s); no spec written" in message
    source.write_text("subject,prompt,new,paraphrse\nA,{subject} x,B,c\n")
    with pytest.raises(ImportDataError, match=r"facts.csv:2: unknown column 'paraphrse' \(did you mean 'paraphrase'\?\)"):
        import_file("table", source)
    source.write_text("subject,new\nA,B\n")
    with pytest.raises(ImportDataError, match=r"facts.csv:2: missing column 'prompt' or 'relation'"):
        import_file("table", source)


def test_bad_jsonl_and_easyedit_records_are_located(tmp_path: Path) -> None:
    source = tmp_path / "facts.jsonl"
    source.write_text('{"subject": "A", "prompt": "{subject} x", "new": "B"}\n\n{"subject": "C", "prompt": \n'
                      '{"subject": "D", "relation": "nope", "new": "E"}\n')
    with pytest.raises(ImportDataError) as raised:
        import_file("table", source)
    assert f"{source}:3: not valid JSON" in str(raised.value)
    assert f"{source}:4: unknown relation 'nope'" in str(raised.value)
    easy = tmp_path / "easy.json"
    good = {"subject": "A", "prompt": "A is in", "target_new": "B"}
    easy.write_text(json.dumps([good, {**good, "subject": ""}, {"prompt": "x"}, {**good, "prompt": "Z is in"}],
                               indent=1))
    result = CliRunner().invoke(cli, ["import", "easyedit", str(easy), "-o", str(tmp_path / "out.kedit")])
    assert isinstance(result.exception, ImportDataError) and not (tmp_path / "out.kedit").exists()
    message = str(result.exception)
    text = easy.read_text().split("\n")
    lines = [i + 1 for i, t in enumerate(text) if t == " {"]
    assert f"{easy}:{lines[1]}: record 1: empty subject" in message
    assert f"{easy}:{lines[2]}: record 2: missing field(s) subject, target_new" in message
    assert f"{easy}:{lines[3]}: record 3: the prompt must contain the subject 'A' exactly once" in message


def test_relations_are_looked_up_once_per_program() -> None:
    # the checker asks for the relation table once per edit; rebuilding it each time made 5,000 edits quadratic
    program = load_text('relation r "{subject} x"\nedit "A" r -> "B"\n')
    assert program.relations is program.relations and set(program.relations) == {"r"}


_TEXT = st.text(st.characters(whitelist_categories=("L", "N", "P", "Zs"), blacklist_characters="{}="),
                min_size=1, max_size=12).filter(lambda t: t.strip() != "")


@st.composite
def _rows(draw: st.DrawFn) -> list[dict]:
    subjects = draw(st.lists(_TEXT, min_size=1, max_size=4, unique_by=str.strip))
    rows = []
    for subject in subjects:
        row = {"subject": subject, "prompt": draw(st.text(max_size=6)).replace("{", "").replace("}", "")
               + "{subject}" + draw(_TEXT), "new": draw(_TEXT).strip()}
        old = draw(st.none() | _TEXT)
        if old is not None and old.strip() != row["new"]:
            row["old"] = old.strip()
        for n in range(draw(st.integers(0, 2))):
            row[f"paraphrase_{n}"] = draw(_TEXT) + " {subject}"
        for n in range(draw(st.integers(0, 2))):
            row[f"neighbour_{n}"] = f"{draw(_TEXT).strip()} => {draw(_TEXT).strip()}"
        rows.append(row)
    return rows


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_rows(), fmt=st.sampled_from(["csv", "jsonl"]))
def test_any_well_formed_table_round_trips(tmp_path: Path, rows: list[dict], fmt: str) -> None:
    source = tmp_path / f"t.{fmt}"
    _write_table(source, rows, fmt)
    requests = compile_text(import_file("table", source).text).requests
    assert len(requests) == len(rows)
    for row, request in zip(rows, requests):
        assert (request.subject, request.rewrite_prompt, request.target_new, request.target_true) == (
            row["subject"], row["prompt"].replace("{subject}", row["subject"]), row["new"], row.get("old"))
        assert [p for p, _, _ in _probes(request, "paraphrase")] == [
            row[c].replace("{subject}", row["subject"]) for c in row if c.startswith("paraphrase")]
        assert [(p, t) for p, t, _ in _probes(request, "neighbour")] == [
            tuple(row[c].split(" => ")) for c in row if c.startswith("neighbour")]


@pytest.mark.parametrize(("template", "name"), [
    ("The mother tongue of {subject} is", "the_mother_tongue_of_is"), ("{subject} hop", "hop_rel"),
    ("Où est {subject} ?", "ou_est"), ("{subject} 1990", "r_1990"), ("{subject} ?!", "fact")])
def test_relation_names_from_templates_parse(template: str, name: str) -> None:
    assert template_slug(template) == name
    builder = SpecBuilder()
    builder.add("S", template, None, "N", "c", builder.by_template(template))
    assert compile_text(builder.text(["t"])).requests[0].prompt == template.replace("{subject}", "{}")


def test_broken_easyedit_json_is_located(tmp_path: Path) -> None:
    easy = tmp_path / "easy.json"
    easy.write_text('[\n {"subject": "A",\n  "prompt": "A is in" "target_new": "B"}\n]\n')
    with pytest.raises(ImportDataError, match=r"easy.json:3:\d+: not valid JSON"):
        import_file("easyedit", easy)
    easy.write_text('[\n {"subject": "A", "prompt": "A is in", "target_new": "B"},\n 7\n]\n')
    with pytest.raises(ImportDataError, match=r"easy.json:3: record 1 is a JSON int"):
        import_file("easyedit", easy)

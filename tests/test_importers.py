"""Importers: every record of the shared benchmark files comes back exactly from the plan."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from kedit_vc.cli.main import cli
from kedit_vc.compiler import compile_text
from kedit_vc.compiler.plan import EditRequest, Plan
from kedit_vc.eval.datasets import data_dir
from kedit_vc.importers import import_file
from kedit_vc.lang import format_spec, parse_text

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

"""Lowering to the plan: requests, probes and foils, batching, method resolution, CLI."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from kedit_vc.cli.main import cli
from kedit_vc.compiler import compile_file, compile_text
from kedit_vc.compiler.plan import Plan, Probe
from kedit_vc.lang import edit_id

REPO = Path(__file__).resolve().parents[1]

SPEC = '''
model "smollm2"
method memit { layers = 4..6 }
expect locality >= 0.95
relation located_in "The {subject} is located in the city of" {
    paraphrase "{subject} can be found in the city of"
}
edit "Eiffel Tower" located_in: "Paris" -> "Rome" {
    paraphrase "Tourists visit the {subject} in"
    neighbour "Louvre" => "Paris"
    neighbour prompt "The Colosseum is in" => "Rome"
    keep "The {subject} was designed by" => "Gustave Eiffel"
    attribute prompt "The Vatican is in" => "Rome"
    portability {
        alias "Tour Eiffel" => "Rome"
        hop "The {subject} is in the country of" => "Italy" not "France"
        reverse "The iron tower of Rome is the" => "Eiffel Tower"
        multihop "Where is the tower?" => "Rome"
        multihop "Which city has the tower?" => "Rome" group "g"
    }
}
edit "Big Ben" located_in -> "Tokyo"
edit "Acme" prompt "Who runs {subject}? {x}" -> "Jane" { method rome { layer = 3 } }
edit "Wiki" prompt "{| {subject} is" -> "x" { method memit { v_lr = 0.1 } }
edit "Tower" located_in -> "Oslo" { method memit }
'''


def test_requests_probes_and_foils() -> None:
    plan = compile_text(SPEC.replace(" {x}", ""))
    eiffel = plan.calls[0].requests[0]
    template = "The {subject} is located in the city of"
    assert eiffel.edit_id == edit_id("Eiffel Tower", template, "Rome")
    assert (eiffel.subject, eiffel.prompt, eiffel.target_new, eiffel.target_true) == (
        "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris")
    assert eiffel.rewrite_prompt == "The Eiffel Tower is located in the city of"
    assert eiffel.probes == (
        Probe("rewrite", "The Eiffel Tower is located in the city of", "Rome", "Paris"),
        Probe("paraphrase", "Eiffel Tower can be found in the city of", "Rome", "Paris"),
        Probe("paraphrase", "Tourists visit the Eiffel Tower in", "Rome", "Paris"),
        Probe("neighbour", "The Louvre is located in the city of", "Paris", "Rome"),
        Probe("neighbour", "The Colosseum is in", "Rome", None),
        Probe("keep", "The Eiffel Tower was designed by", "Gustave Eiffel", "Rome"),
        Probe("attribute", "The Vatican is in", "Rome", "Paris"),
        Probe("alias", "The Tour Eiffel is located in the city of", "Rome", "Paris"),
        Probe("hop", "The Eiffel Tower is in the country of", "Italy", "France"),
        Probe("reverse", "The iron tower of Rome is the", "Eiffel Tower", None),
        Probe("multihop", "Where is the tower?", "Rome", None, eiffel.edit_id),
        Probe("multihop", "Which city has the tower?", "Rome", None, "g"),
    )
    big_ben = plan.calls[0].requests[1]
    assert big_ben.target_true is None and big_ben.probes[0].foil is None


def test_batches_and_method_resolution() -> None:
    plan = compile_text(SPEC.replace(" {x}", ""))
    summary = [(c.method, dict(c.hparams), [r.subject for r in c.requests]) for c in plan.calls]
    assert summary == [
        ("memit", {"layers": [4, 5, 6]}, ["Eiffel Tower", "Big Ben", "Tower"]),
        ("rome", {"layer": 3}, ["Acme"]),
        ("memit", {"layers": [4, 5, 6], "v_lr": 0.1}, ["Wiki"]),
    ]
    assert plan.model == "smollm2"
    assert [e.to_json() for e in plan.expectations] == [{"metric": "locality", "op": ">=", "threshold": 0.95}]


def test_literal_braces_are_escaped_for_rome() -> None:
    plan = compile_text(SPEC.replace(" {x}", ""))
    wiki = plan.calls[2].requests[0]
    assert wiki.prompt == "{{| {} is" and wiki.rewrite_prompt == "{| Wiki is"


def test_default_method_is_rome_and_inherited_by_includes(tmp_path: Path) -> None:
    (tmp_path / "inner.kedit").write_text('edit "B" prompt "{subject} b" -> "y"\n')
    (tmp_path / "own.kedit").write_text('method ft\nedit "C" prompt "{subject} c" -> "z"\n')
    (tmp_path / "main.kedit").write_text('method memit\ninclude "inner.kedit"\ninclude "own.kedit"\n'
                                         'edit "A" prompt "{subject} a" -> "x"\n')
    plan = compile_file(tmp_path / "main.kedit")
    assert [(c.method, [r.subject for r in c.requests]) for c in plan.calls] == [
        ("memit", ["B", "A"]), ("ft", ["C"])]
    assert compile_text('edit "A" prompt "{subject} a" -> "x"').calls[0].method == "rome"


def test_plan_json_round_trips() -> None:
    plan = compile_text(SPEC.replace(" {x}", ""))
    assert Plan.loads(plan.dumps()) == plan


def test_demo_spec_compiles() -> None:
    plan = compile_file(REPO / "specs" / "demo.kedit")
    assert len(plan.requests) == 4 and {c.method for c in plan.calls} == {"rome"}
    prompts = [r.prompt for r in plan.requests]
    assert any(p.startswith("{}") for p in prompts) and any(not p.startswith("{}") for p in prompts)
    kinds = {p.kind for r in plan.requests for p in r.probes}
    assert {"rewrite", "paraphrase", "neighbour", "keep", "hop"} <= kinds


def test_kvc_compile_summary_json_and_output(tmp_path: Path) -> None:
    runner = CliRunner()
    demo = str(REPO / "specs" / "demo.kedit")
    result = runner.invoke(cli, ["compile", demo])
    assert result.exit_code == 0
    assert "4 edit(s) in 2 editor call(s)" in result.output
    assert '"The Eiffel Tower is located in the city of" => "Rome"  (not "Paris")' in result.output
    result = runner.invoke(cli, ["compile", demo, "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["version"] == 1
    out = tmp_path / "plan.json"
    result = runner.invoke(cli, ["compile", demo, "-o", str(out)])
    assert result.exit_code == 0 and Plan.loads(out.read_text()) == compile_file(demo)

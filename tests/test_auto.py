"""``method auto``: the weighted choice by hand, the runner on a tiny model, and ``kvc commit``."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY_ROME, run_kvc, write_spec
from kedit_vc.compiler.plan import EditorCall, EditRequest, Plan, Probe
from kedit_vc.editors.auto.choose import Trial, candidate_settings, choose, usable_weights
from kedit_vc.editors.auto.hparams import AutoHparams
from kedit_vc.editors.base import EditContext, get_editor
from kedit_vc.editors.registry import build_hparams
from kedit_vc.errors import UsageError
from kedit_vc.ops.plans import override
from kedit_vc.lang import SpecError, load_text
from tiny_models import tiny_family_model, tiny_tokenizer

ROME_METRICS = {"reliability": 1.0, "generalization": 0.5, "locality": 0.8, "reliability_cf": 1.0}
FT_METRICS = {"reliability": 0.9, "generalization": 0.9, "locality": 1.0, "reliability_cf": 0.0}


# --- the choice, on made-up numbers ------------------------------------------------------


def test_weighted_score_matches_hand_arithmetic() -> None:
    trials = [Trial("rome", ROME_METRICS, 1.0), Trial("ft", FT_METRICS, 2.0)]
    choice = choose(trials, {"reliability": 2, "generalization": 1, "locality": 1})
    assert choice.weights == {"reliability": 0.5, "generalization": 0.25, "locality": 0.25}
    assert choice.scores == pytest.approx(((2 * 1.0 + 0.5 + 0.8) / 4, (2 * 0.9 + 0.9 + 1.0) / 4))
    assert choice.chosen == "ft" and choice.label == "auto→ft" and choice.left_out == ()
    table = choice.table()
    assert "ft" in table.splitlines()[3] and table.splitlines()[3].endswith("<- chosen")
    assert "0.8250" in table and "0.9250" in table
    # CounterFact names are aliases of the registered definitions.
    assert choose(trials, {"efficacy": 1}).chosen == "rome"


def test_a_metric_without_probes_is_left_out_and_the_rest_renormalised() -> None:
    trials = [Trial("rome", ROME_METRICS, 1.0), Trial("ft", FT_METRICS, 2.0)]
    choice = choose(trials)  # default: the four headlines, portability has no probes here
    assert choice.left_out == ("portability",)
    assert choice.weights == pytest.approx({"reliability": 1 / 3, "generalization": 1 / 3, "locality": 1 / 3})
    assert choice.scores == pytest.approx(((1.0 + 0.5 + 0.8) / 3, (0.9 + 0.9 + 1.0) / 3))
    assert "left out (no probes in this edit): portability" in choice.table()
    data = choice.to_json()
    assert data["chosen"] == "ft" and data["left_out"] == ["portability"]
    assert data["candidates"][0] == {"method": "rome", "score": pytest.approx(2.3 / 3), "seconds": 1.0,
                                     "metrics": {"reliability": 1.0, "generalization": 0.5, "locality": 0.8}}
    with pytest.raises(UsageError, match="no weighted metric has probes"):
        choose(trials, {"portability": 1})


def test_a_tie_goes_to_the_first_candidate() -> None:
    trials = [Trial("memit", ROME_METRICS, 3.0), Trial("rome", ROME_METRICS, 1.0), Trial("ft", FT_METRICS, 1.0)]
    assert choose(trials, {"reliability": 1}).chosen == "memit"
    assert choose(trials[1:], {"reliability": 1, "locality": 0}).chosen == "rome"


@pytest.mark.parametrize("weights, fragment", [
    ({"fluency": 1}, "not a metric of the edit's probes"),
    ({"reliability": -1}, "a weight must be a number >= 0"),
    ({"reliability": "high"}, "a weight must be a number >= 0"),
    ({"reliability": 0}, "no weighted metric"),
])
def test_bad_weights_are_usage_errors(weights, fragment) -> None:  # noqa: ANN001
    with pytest.raises(UsageError, match=fragment):
        usable_weights(weights, {"reliability"})


def test_candidates_are_checked_before_any_model_work() -> None:
    settings = candidate_settings(AutoHparams(candidates=("rome", "ft"), hparams={"rome": {"layer": 1}}))
    assert [m for m, _ in settings] == ["rome", "ft"] and settings[0][1].layer == 1
    assert [m for m, _ in candidate_settings(build_hparams("auto", {"candidates": "memit, ft"}))] == ["memit", "ft"]
    for hp, fragment in [
        (AutoHparams(candidates=("rome", "fine")), "'fine' is not an editing method"),
        (AutoHparams(candidates=("auto",)), "'auto' is not an editing method"),
        (AutoHparams(candidates=()), "at least one candidate"),
        (AutoHparams(candidates=("rome", "rome")), "listed twice"),
        (AutoHparams(hparams={"rome": {"layr": 1}}), "rome has no such hyperparameter"),
    ]:
        with pytest.raises(UsageError, match=fragment):
            candidate_settings(hp)


def test_method_auto_on_the_command_line_keeps_the_spec_hyperparameters() -> None:
    request = EditRequest("e-1", "S", "{} is in", "x")
    plan = Plan((EditorCall("rome", {"layer": 1}, (request,)),))
    (call,) = override(plan, "auto").calls
    assert call.method == "auto" and call.hparams == {"hparams": {"rome": {"layer": 1}}}
    with pytest.raises(UsageError, match="'fine' is not an editing method"):
        override(plan, "auto", {"candidates": ["rome", "fine"]})


def test_spec_checks_auto_candidates_and_their_hyperparameters() -> None:
    load_text('method auto { weights = { efficacy = 1 }, candidates = ["rome"], hparams = { rome = { layer = 1 } } }')
    with pytest.raises(SpecError) as raised:
        load_text('method auto { weights = { fluency = 1 }, hparams = { rome = { layr = 1 }, fine = {} } }')
    assert sorted(raised.value.messages) == [
        "'fluency' is not measured on the edit's probes, so auto cannot weigh it",
        "unknown candidate method 'fine' in hparams",
        "unknown hyperparameter 'layr' for rome (did you mean 'layer'?)",
    ]


# --- the runner, on a tiny random model --------------------------------------------------

REQUEST = EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris", (
    Probe("rewrite", "The Eiffel Tower is located in the city of", "Rome", "Paris"),
    Probe("paraphrase", "Tourists travel to see the Eiffel Tower in the city of", "Rome", "Paris"),
    Probe("neighbour", "The Louvre is located in the city of", "Paris", "Rome"),
))
TINY_CANDIDATES = {
    "rome": {"layer": 1, "v_steps": 8, "stats_tokens": 600, "context_templates": 2, "context_length": 3},
    "ft": {"layer": 1, "steps": 5},
}


def test_auto_editor_returns_the_winner_and_leaves_the_model_as_found(tmp_path, capsys) -> None:  # noqa: ANN001
    model = tiny_family_model("llama", d_model=32, d_mlp=64, vocab=300, layers=3)
    tok = tiny_tokenizer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hp = build_hparams("auto", {"candidates": ["rome", "ft"], "hparams": TINY_CANDIDATES,
                                "weights": {"reliability": 1}})
    context = EditContext(fingerprint="tiny-auto", stats_dir=str(tmp_path), progress=False)
    result = get_editor("auto").edit(model, tok, [REQUEST], hp, context)
    delta = result.delta
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    info = result.info["auto"]
    chosen = info["chosen"]
    assert [c["method"] for c in info["candidates"]] == ["rome", "ft"]
    assert result.info["method"] == f"auto→{chosen}"
    scores = [c["score"] for c in info["candidates"]]
    assert scores[["rome", "ft"].index(chosen)] == max(scores)
    # The same delta the winner gives when called alone (editors are deterministic here).
    alone = get_editor(chosen).edit(model, tok, [REQUEST], build_hparams(chosen, TINY_CANDIDATES[chosen]),
                                    EditContext(fingerprint="tiny-auto", stats_dir=str(tmp_path), progress=False)).delta
    assert delta.content_hash() == alone.content_hash()
    assert ("layer" in result.info) and (bool(result.written_keys) == (chosen == "rome"))
    table = capsys.readouterr().err
    assert "candidate" in table and "<- chosen" in table and "reliability" in table


# --- kvc commit end to end ---------------------------------------------------------------

EIFFEL = '''edit "Eiffel Tower" prompt "The {subject} is located in the city of": "Paris" -> "Rome" {
    paraphrase "Tourists travel to see the {subject} in the city of"
    neighbour "Louvre" => "Paris"
}'''
AUTO = ('method auto { weights = { reliability = 2, locality = 1 }, candidates = ["rome", "ft"], hparams = {\n'
        '  rome = { layer = 1 v_steps = 3 stats_tokens = 2000 context_templates = 2 context_length = 4 }\n'
        '  ft = { layer = 1 steps = 3 } } }')


@pytest.fixture()
def store_dir(project, tiny_model_dir):  # noqa: ANN001, ANN201
    assert run_kvc("init", "--model", str(tiny_model_dir)).exit_code == 0
    return project


def test_commit_with_auto_records_the_choice_and_reverts(store_dir) -> None:  # noqa: ANN001
    result = run_kvc("commit", str(write_spec(store_dir, "a.kedit", EIFFEL, AUTO)), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "auto: editing method chosen by weighted score" in result.stderr
    assert "<- chosen" in result.stderr and "left out" not in result.stderr
    manifest = json.loads(run_kvc("show", "HEAD", "--json").stdout)["manifest"]
    info = manifest["extra"]["editor_info"][0]["auto"]
    chosen = info["chosen"]
    assert chosen in ("rome", "ft") and manifest["method"] == f"auto→{chosen}"
    assert info["weights"] == {"reliability": pytest.approx(2 / 3), "locality": pytest.approx(1 / 3)}
    assert f"edit(s) with auto→{chosen}" in result.stdout
    assert f"method auto→{chosen}" in run_kvc("log", "-n", "1").stdout
    assert f"method auto→{chosen}" in run_kvc("show", "HEAD").stdout
    reverted = run_kvc("revert", "HEAD", "--no-progress")
    assert reverted.exit_code == 0, reverted.output
    assert "back to the base model's prediction" in reverted.stdout
    assert json.loads(run_kvc("status", "--json").stdout)["live_edits"] == 0


def test_commit_method_auto_flag_and_a_bad_candidate(store_dir) -> None:  # noqa: ANN001
    spec = write_spec(store_dir, "a.kedit", EIFFEL, TINY_ROME)
    bad = run_kvc("commit", str(spec), "--method", "auto", "--hparam", 'candidates=["rome","fine"]')
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert "'fine' is not an editing method" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    result = run_kvc("commit", str(spec), "--no-progress", "--method", "auto", "--hparam", 'candidates=["rome"]')
    assert result.exit_code == 0, result.output
    assert "edit(s) with auto→rome" in result.stdout and "portability" in result.stderr  # left out: no probes

"""The benchmark runner's plumbing on a tiny model with a test-only editor.

The editor below adds a vector to the LM-head row of each request's first target token,
so that token's logit rises by ``BOOST`` at the end of the rewrite prompt: enough to see
reliability move, and exactly undoable by the inverse delta.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch

from kedit_vc.cli.main import main
from kedit_vc.editors import registry
from kedit_vc.editors.base import EditResult
from kedit_vc.editors.registry import MethodSpec
from kedit_vc.errors import UsageError
from kedit_vc.eval.datasets import data_dir, load_cases
from kedit_vc.models.forward import final_hidden
from kedit_vc.models.prompting import encode_continuation, encode_text
from kedit_vc.ops.bench import run_bench
from test_eval_fixtures import tiny_model, tiny_tokenizer

BOOST = 30.0

COUNTERFACT = [
    {"case_id": 7, "requested_rewrite": {"prompt": "{} is located in", "relation_id": "P30",
                                         "target_new": {"str": "Antarctica", "id": "Q51"},
                                         "target_true": {"str": "Africa", "id": "Q15"}, "subject": "Angola"},
     "paraphrase_prompts": ["Angola belongs to the continent of", "Angola is part of the continent of"],
     "neighborhood_prompts": ["Ghana is in", "Kenya is located in"], "attribute_prompts": [],
     "generation_prompts": ["people in Angola speak", "people in Angola speak"]},
    {"case_id": 9, "requested_rewrite": {"prompt": "{} is located in the city of", "relation_id": "P131",
                                         "target_new": {"str": "Rome", "id": "Q220"},
                                         "target_true": {"str": "Paris", "id": "Q90"}, "subject": "Eiffel Tower"},
     "paraphrase_prompts": ["the Eiffel Tower is in the city of", "Eiffel Tower , in the city of"],
     "neighborhood_prompts": ["the Colosseum is located in the city of"], "attribute_prompts": [],
     "generation_prompts": ["Eiffel Tower is"]},
]
ZSRE = [
    {"subject": "Eiffel Tower", "src": "where is the Eiffel Tower ?", "rephrase": "which city is the Eiffel Tower in ?",
     "alt": "Rome", "answers": ["Paris"], "loc": "nq question: what is the capital of Japan", "loc_ans": "Tokyo",
     "portability": {"New Question": "which country is the Eiffel Tower in ?", "New Answer": "Italy"}},
]
MQUAKE = [
    {"case_id": 1, "requested_rewrite": [
        {"prompt": "{} is a citizen of", "subject": "Ellie Kemper", "relation_id": "P27",
         "target_new": {"str": "Croatia", "id": "Q224"}, "target_true": {"str": "Japan", "id": "Q17"}}],
     "questions": ["who is the head of state of the country Ellie Kemper is a citizen of ?",
                   "what is the head of state of Ellie Kemper ' s country ?"],
     "answer": "Tokyo", "new_answer": "Kolinda Grabar - Kitarovic", "new_answer_alias": ["Kitarovic"]},
    {"case_id": 2, "requested_rewrite": [
        {"prompt": "{} is located in", "subject": "Ghana", "relation_id": "P30",
         "target_new": {"str": "Asia", "id": "Q48"}, "target_true": {"str": "Africa", "id": "Q15"}},
        {"prompt": "the capital of {} is", "subject": "Japan", "relation_id": "P36",
         "target_new": {"str": "Berlin", "id": "Q64"}, "target_true": {"str": "Tokyo", "id": "Q1490"}}],
     "questions": ["what is the capital of the country Ghana is in ?"],
     "answer": "Tokyo", "new_answer": "Berlin", "new_answer_alias": []},
]


@pytest.fixture()
def data(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    for name, records in (("counterfact_500.json", COUNTERFACT), ("zsre_eval_portability_1037.json", ZSRE),
                          ("mquake_cf_354.json", MQUAKE)):
        (folder / name).write_text(json.dumps(records))
    monkeypatch.setenv("KVC_DATA", str(folder))
    return folder


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture()
def model():
    return tiny_model()


class AddDelta:
    """A test-only delta: parameter name -> tensor added to it."""

    def __init__(self, updates: dict[str, torch.Tensor]):
        self.updates = updates

    def apply(self, model: torch.nn.Module) -> None:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, update in self.updates.items():
                params[name].add_(update)

    def inverse(self) -> "AddDelta":
        return AddDelta({k: -v for k, v in self.updates.items()})


@dataclass(frozen=True)
class BoostHparams:
    boost: float = BOOST


class BoostEditor:
    """Raises each request's first target-token logit at the end of its rewrite prompt."""

    name = "boost"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def edit(self, model, tokenizer, requests, hparams, context):
        self.calls.append(len(requests))
        weight = model.lm_head.weight
        update = torch.zeros_like(weight)
        for request in requests:
            ids = torch.tensor([encode_text(tokenizer, request.rewrite_prompt)])
            with torch.no_grad():
                h = final_hidden(model, ids)[0, -1]  # [d]
            update[encode_continuation(tokenizer, " " + request.target_new)[0]] += hparams.boost * h / h.dot(h)
        return EditResult(delta=AddDelta({"lm_head.weight": update}))


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_restored(model, before):
    for name, value in model.state_dict().items():
        assert torch.allclose(value, before[name], atol=1e-6), name


def test_converters_follow_the_field(data):
    (cf, _) = load_cases("counterfact")
    probes = cf.requests[0].probes
    assert [p.kind for p in probes] == ["rewrite", "paraphrase", "paraphrase", "neighbour", "neighbour"]
    assert (probes[0].prompt, probes[0].target, probes[0].foil) == ("Angola is located in", "Antarctica", "Africa")
    assert (probes[3].target, probes[3].foil) == ("Africa", "Antarctica")
    assert cf.generation_prompts == ("people in Angola speak",)

    (zs,) = load_cases("zsre")
    request = zs.requests[0]
    assert request.prompt == "where is the {} ?" and request.rewrite_prompt == ZSRE[0]["src"]
    assert [(p.kind, p.target) for p in request.probes] == [
        ("rewrite", "Rome"), ("paraphrase", "Rome"), ("neighbour", "Tokyo"), ("hop", "Italy")]

    one, two = load_cases("mquake")
    assert len(two.requests) == 2 and two.requests[0].probes[0].kind == "rewrite"
    multihop = [p for p in one.requests[-1].probes if p.kind == "multihop"]
    assert len(multihop) == 4 and {p.group for p in multihop} == {"mquake-1"}
    assert {p.target for p in multihop} == {"Kolinda Grabar - Kitarovic", "Kitarovic"}
    assert len(load_cases("counterfact", n=1)) == 1


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("KVC_DATA", raising=False)
    assert data_dir().parts[-2:] == ("shared", "data")
    assert data_dir(tmp_path) == tmp_path
    with pytest.raises(UsageError, match="not found"):
        load_cases("zsre", directory=tmp_path)
    with pytest.raises(UsageError, match="unknown benchmark"):
        load_cases("wikidata", directory=tmp_path)


def test_per_case_editing_moves_reliability_and_restores_weights(data, model, tok):
    editor, before = BoostEditor(), _state(model)
    result = run_bench(model, tok, "counterfact", load_cases("counterfact"), editor, BoostHparams())
    _assert_restored(model, before)
    assert editor.calls == [1, 1]
    m, pre = result.report.metrics, result.report.pre_metrics
    assert m["reliability_cf"] == 1.0 and m["reliability_acc"] == 1.0
    assert pre["reliability_cf"] < 1.0  # the edit moved it: before, the new object did not win every prompt
    assert {"generalization_cf", "locality_cf", "cf_score", "seconds", "delta_bytes"} <= set(m)
    assert m["delta_bytes"] == model.lm_head.weight.numel() * 4
    summary = result.summary()
    assert "efficacy score" in summary and "neighbourhood score" in summary and "wall time" in summary
    assert json.loads(json.dumps(result.to_json()))["report"]["n_edits"] == 2


def test_pre_scores_of_an_earlier_run_are_reused_and_give_the_same_report(data, model, tok, monkeypatch):
    import kedit_vc.ops.bench as bench_module

    cases = load_cases("counterfact")
    first = run_bench(model, tok, "counterfact", cases, BoostEditor(), BoostHparams())
    scored: list[list[str]] = []
    real = bench_module.score_requests

    def counting(model, tokenizer, requests, **kwargs):
        scored.append([r.edit_id for r in requests])
        return real(model, tokenizer, requests, **kwargs)

    monkeypatch.setattr(bench_module, "score_requests", counting)
    one = {cases[0].requests[0].edit_id: first.pre_scores[cases[0].requests[0].edit_id]}
    again = run_bench(model, tok, "counterfact", cases, BoostEditor(), BoostHparams(), pre_scores=one)
    # pre-edit: only the request not handed in; then one post-edit scoring per case
    assert scored[0] == [cases[1].requests[0].edit_id] and len(scored) == 1 + len(cases)
    assert again.report.pre_metrics == first.report.pre_metrics
    assert again.report.metrics["reliability_cf"] == first.report.metrics["reliability_cf"]


def test_batch_and_sequential_modes(data, model, tok):
    cases = load_cases("counterfact")
    before = _state(model)
    batched = BoostEditor()
    one_batch = run_bench(model, tok, "counterfact", cases, batched, BoostHparams(), batch=2)
    assert batched.calls == [2]
    sequential = BoostEditor()
    seq = run_bench(model, tok, "counterfact", cases, sequential, BoostHparams(), sequential=True)
    assert sequential.calls == [1, 1]
    _assert_restored(model, before)
    assert seq.report.n_edits == one_batch.report.n_edits == 2
    assert seq.report.metrics["reliability_cf"] == 1.0


def test_failed_edit_still_restores_weights(data, model, tok):
    class Failing(BoostEditor):
        def edit(self, model, tokenizer, requests, hparams, context):
            if self.calls:
                raise RuntimeError("boom")
            return super().edit(model, tokenizer, requests, hparams, context)

    before = _state(model)
    with pytest.raises(RuntimeError, match="boom"):
        run_bench(model, tok, "counterfact", load_cases("counterfact"), Failing(), BoostHparams(), sequential=True)
    _assert_restored(model, before)


def test_zsre_and_mquake_reference_metrics(data, model, tok):
    zsre = run_bench(model, tok, "zsre", load_cases("zsre"), BoostEditor(), BoostHparams())
    assert {"reliability_acc", "generalization_acc", "locality_agree", "portability_acc"} <= set(zsre.report.metrics)
    assert zsre.report.metrics["reliability_acc"] == 1.0
    mquake = run_bench(model, tok, "mquake", load_cases("mquake"), BoostEditor(), BoostHparams())
    assert mquake.report.counts["portability_multihop"] == 2
    assert "multi-hop accuracy" in mquake.summary()


def test_fluency_is_measured_before_and_after(data, model, tok):
    result = run_bench(model, tok, "counterfact", load_cases("counterfact", n=1), BoostEditor(), BoostHparams(),
                       fluency_tokens=6)
    post, pre = result.report.metrics["fluency"], result.report.pre_metrics["fluency"]
    # n-gram entropy (bits) of generated text: zero would mean nothing was generated or measured
    assert 0 < pre < 16 and 0 < post < 16, (pre, post)


def test_kvc_bench_command(data, tmp_path, monkeypatch, capsys, tok):
    folder = tmp_path / "tiny"
    tiny_model().save_pretrained(folder)
    tok.save_pretrained(folder)
    monkeypatch.setenv("KVC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(registry._METHODS, "boost", MethodSpec("boost", BoostHparams, BoostEditor, "test method"))
    out_json = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "counterfact", "--n", "2", "--method", "boost", "--model", str(folder),
              "--hparam", "boost=25", "--json", str(out_json), "--given-neighbours", "1"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    assert "counterfact: boost, 2 cases, batch 1" in out and "efficacy score" in out
    saved = json.loads(out_json.read_text())
    assert saved["report"]["metrics"]["reliability_cf"] == 1.0
    assert saved["run"]["hparams"] == {"boost": 25.0} and saved["run"]["model"] == str(folder)
    assert saved["given_neighbours"] == 1
    assert 0 < saved["median_edit_seconds"] < 60 and saved["run"]["date"].startswith("20")


def test_kvc_bench_rejects_unknown_method_and_bad_hparams(data, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "zsre", "--method", "nope"])
    assert exit_info.value.code == 2 and "unknown editing method" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "zsre", "--method", "rome", "--hparam", "layerz=3"])
    assert exit_info.value.code == 2 and "layerz" in capsys.readouterr().err


def test_shared_benchmark_files_convert():
    folder = data_dir()
    # The shared data is part of the environment (as in test_importers): missing, it fails.
    assert (folder / "counterfact_500.json").is_file(), \
        f"benchmark data missing: {folder.resolve()} (the shared data folder must exist; or set KVC_DATA)"
    cf = load_cases("counterfact", n=5, directory=folder)
    assert all(len(c.requests[0].probes) == 13 for c in cf)  # 1 rewrite, 2 paraphrases, 10 neighbours
    assert len(load_cases("zsre", n=5, directory=folder)) == 5
    mq = load_cases("mquake", directory=folder)
    assert len(mq) == 354 and all(any(p.kind == "multihop" for p in c.requests[-1].probes) for c in mq)


def test_delta_bytes_of_a_real_delta():
    from kedit_vc.delta import Delta, LowRank
    from kedit_vc.eval.efficiency import delta_bytes

    delta = Delta({"lm_head.weight": LowRank(torch.zeros(128, 1), torch.zeros(32, 1))})
    assert delta_bytes(delta) == (128 + 32) * 4
    assert delta_bytes(AddDelta({"w": torch.zeros(3, 2)})) == 24


def test_non_weight_patches_are_scored_while_attached_then_detached(data, model, tok):
    """T-Patcher's neurons (a patch beside the weights) count in the benchmark and leave no hook behind."""
    from kedit_vc.editors.base import get_editor
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.patches.attach import attached

    cases = load_cases("counterfact")
    before = _state(model)
    hp = build_hparams("tpatcher", {"memory_texts": 5, "memory_length": 6})
    result = run_bench(model, tok, "counterfact", cases, get_editor("tpatcher"), hp)
    _assert_restored(model, before)
    assert attached(model) == []
    m, pre = result.report.metrics, result.report.pre_metrics
    assert m["reliability_cf"] == 1.0 and pre["reliability_cf"] < 1.0
    assert m["delta_bytes"] > 0


def test_an_editor_is_never_given_a_scored_probe(data, model, tok):
    """The benchmark hands editors the rewrite and only the neighbourhood prompts it does not
    score: an editor training against declared neighbours must not see its own test."""
    class Recording(BoostEditor):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[str, ...]] = []

        def edit(self, model, tokenizer, requests, hparams, context):
            self.seen += [tuple(p.prompt for p in r.probes) for r in requests]
            return super().edit(model, tokenizer, requests, hparams, context)

    cases = load_cases("counterfact")
    neighbours = [[p.prompt for p in r.probes if p.kind == "neighbour"] for c in cases for r in c.requests]
    editor = Recording()
    every = run_bench(model, tok, "counterfact", cases, editor, BoostHparams())
    assert editor.seen == [(), ()]
    editor = Recording()
    split = run_bench(model, tok, "counterfact", cases, editor, BoostHparams(), given_neighbours=1)
    assert editor.seen == [(n[-1],) for n in neighbours]
    assert split.report.metrics["reliability_cf"] == every.report.metrics["reliability_cf"] == 1.0


@settings(max_examples=50, deadline=None)
@given(kinds=st.lists(st.sampled_from(["rewrite", "paraphrase", "neighbour", "hop"]), max_size=12),
       given_count=st.integers(0, 6))
def test_split_neighbours_partitions_the_probes(kinds, given_count):
    from kedit_vc.compiler.plan import EditRequest, Probe
    from kedit_vc.ops.bench import split_neighbours

    probes = tuple(Probe(kind=kind, prompt=f"p{i}", target="t") for i, kind in enumerate(kinds))
    request = EditRequest("e", "S", "{} is in", "X", "Y", probes=probes)
    scored, handed = split_neighbours(request, given_count)
    neighbours = [p for p in probes if p.kind == "neighbour"]
    assert list(handed.probes) == neighbours[len(neighbours) - min(given_count, len(neighbours)):] * (given_count > 0)
    assert sorted(p.prompt for p in scored.probes + handed.probes) == sorted(p.prompt for p in probes)
    assert not {p.prompt for p in scored.probes} & {p.prompt for p in handed.probes}
    assert [p for p in probes if p in scored.probes] == list(scored.probes)  # order kept

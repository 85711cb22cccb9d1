"""Smoke runs of every bench script at tiny sizes, so the benchmarks do not rot.

Each script's ``main(argv)`` runs on the tiny random Llama (statistics from the seeded
text file the autouse fixture points ``KVC_STATS_TEXT`` at) and writes its JSON to a
temporary folder; ``report.py`` then renders those files. Figures are not checked:
benchmarks are not tests.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
TINY_EDIT = ["--stats-tokens", "2000", "--context-templates", "2", "--context-length", "4"]


def _script(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-results")


def _common(model: Path, results: Path) -> list[str]:
    # Keep the session's thread count: setup() sets torch's global thread pool.
    return ["--model", str(model), "--results-dir", str(results), "--threads", str(torch.get_num_threads())]


CASES = {
    "rome_latency": ["--n", "1", "--v-steps", "2", "--ablation-edits", "1", "--ablation-steps", "1", *TINY_EDIT],
    "memit_scaling": ["--sizes", "1,2", "--v-steps", "1", *TINY_EDIT],
    "memory": ["--memit-batch", "2", "--probe", "1", "--rome-v-steps", "1", *TINY_EDIT],
    "storage": ["--commits", "3", "--method-commits", "2", "--memit-batch", "2"],
    "checkout": ["--sizes", "2,3", "--repeats", "1", "--revert-index", "1", "--profile"],
    "stats_throughput": ["--tokens", "300", "--layers", "1,2"],
}


@pytest.mark.parametrize("name", list(CASES))
def test_bench_script_runs(name: str, tiny_model_dir: Path, results: Path) -> None:
    payload = _script(name).main([*_common(tiny_model_dir, results), *CASES[name]])
    saved = json.loads((results / f"{name}.json").read_text())
    assert saved["machine"]["threads"] == torch.get_num_threads()
    assert set(payload) <= set(saved)


def test_report_renders_every_result(results: Path, tiny_model_dir: Path) -> None:
    for name in CASES:  # every script's result, also when this test runs alone (-k report)
        if not (results / f"{name}.json").is_file():
            _script(name).main([*_common(tiny_model_dir, results), *CASES[name]])
    text = _script("report").main(["--results-dir", str(results)])
    assert "unreadable" not in text
    for name in CASES:
        assert name in text, name


def test_report_tabulates_sequential_curves(tmp_path: Path) -> None:
    """Each run's values land under its own checkpoints; a checkpoint a run lacks shows '-'."""
    def run(method: str, points: list[int], efficacy: float) -> dict:
        pre = {"reliability_cf": 0.1, "generalization_cf": 0.2, "locality_cf": 0.7}
        curve = [{"edits": n, "commits": n, "reliability_cf": efficacy, "generalization_cf": 0.5,
                  "locality_cf": 0.6, "pre": pre} for n in points]
        return {"method": method, "n": points[-1], "batch": 1, "seconds_per_commit": 1.0, "curve": curve}

    (tmp_path / "sequential_memit.json").write_text(json.dumps(run("memit", [2, 4], 0.75)))
    (tmp_path / "sequential_rome.json").write_text(json.dumps(run("rome", [2], 0.25)))
    table = _script("report").sequential_curves(tmp_path).splitlines()
    assert table[0] == "| method | metric | 2 edits | 4 edits |"
    assert "| pre-edit | neighbourhood | 0.700 | 0.700 |" in table
    assert "| memit | efficacy | 0.750 | 0.750 |" in table
    assert "| rome | efficacy | 0.250 | - |" in table


def test_two_heldout_runs_on_one_results_file_keep_each_others_rows(tmp_path: Path) -> None:
    """``heldout_locate`` runs of two methods may share ``--name``: each save keeps the rows
    the other saved meanwhile, and a run's own row wins over a saved one for the same pair."""
    merged = _script("heldout_locate").merged
    path = tmp_path / "shared.json"
    other = [{"method": "kn", "record": 0, "x": 1}, {"method": "rome", "record": 0, "x": "stale"}]
    path.write_text(json.dumps({"rows": other}))
    ours = [{"method": "rome", "record": 0, "x": 2}]
    rows = merged(path, ours)
    assert sorted((r["method"], r["x"]) for r in rows) == [("kn", 1), ("rome", 2)]
    assert merged(tmp_path / "absent.json", ours) == ours


def test_sequential_scores_a_fixed_sample_of_the_edits() -> None:
    sample = _script("sequential").scored_sample
    assert sample(10, 0) == list(range(10)) == sample(10, 10) == sample(10, 50)
    drawn = sample(5000, 500)
    assert drawn == sorted(set(drawn)) and len(drawn) == 500 and 0 <= drawn[0] and drawn[-1] < 5000
    assert drawn == sample(5000, 500)                  # the same edits in every run and on --resume
    assert 40 <= sum(i < 1000 for i in drawn) <= 160   # spread over the history, not its start


def _cf_record(relation: str, new: str) -> dict[str, object]:
    return {"case_id": 7, "requested_rewrite": {
        "prompt": "{} was born in", "relation_id": relation, "subject": "Ada Example",
        "target_new": {"str": new}, "target_true": {"str": "Rome"}},
        "paraphrase_prompts": ["Ada Example is a native of"], "neighborhood_prompts": ["Bo Other was born in"]}


def test_composed_probes_ask_about_the_new_object_and_are_worded_unlike_the_rules() -> None:
    derive = _script("derive_counterfact")
    truths = _script("compose_truths")
    built = derive.composed_case(_cf_record("P19", "Paris"))
    assert built is not None
    request = built[0].requests[0]
    composed = [p for p in request.probes if p.kind == "multihop"]
    assert [(p.prompt, p.target) for p in composed] == [("Ada Example was born in a place in the country of", "France")]
    assert len({p.group for p in composed}) == 1
    assert [p.kind for p in request.probes[:3]] == ["rewrite", "paraphrase", "neighbour"]
    london = derive.composed_case(_cf_record("P19", "London"))
    assert london is not None and {p.target for p in london[0].requests[0].probes if p.kind == "multihop"} >= {
        "United Kingdom", "England"}
    assert derive.composed_case(_cf_record("P19", "Atlantis")) is None      # object not in the table
    assert derive.composed_case(_cf_record("P106", "Paris")) is None        # relation does not compose
    rules = (BENCH.parent / "specs" / "rules" / "world.kedit").read_text()
    for probes in truths.COMPOSED.values():
        for _, template in probes:
            assert template not in rules


def test_serac_threshold_rates_count_own_routing_in_scope_and_any_routing_out_of_scope() -> None:
    rates = _script("serac_threshold").rates
    # prompts: rewrite of edit 0, paraphrase of edit 0 (closest to edit 1: misrouted), neighbour of edit 1
    prob = torch.tensor([[0.9, 0.1], [0.55, 0.7], [0.65, 0.2]])
    owner = torch.tensor([0, 0, 1])
    kinds = ["rewrite", "paraphrase", "neighbour"]
    assert rates(prob, owner, kinds, 0.6) == {"rewrite": 1.0, "paraphrase": 0.0, "neighbour_rejected": 0.0}
    assert rates(prob, owner, kinds, 0.8) == {"rewrite": 1.0, "paraphrase": 0.0, "neighbour_rejected": 1.0}


def test_memprompt_threshold_scores_are_the_best_cosine_over_real_positions() -> None:
    from kedit_vc.editors.serac.classifier import Features

    cosine_scores = _script("memprompt_threshold").cosine_scores
    keys = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # prompt 0: positions (1, 0) and (1, 1); prompt 1: (0, 3) then a padded (1, 0) that must not count
    states = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 3.0], [1.0, 0.0]]])
    mask = torch.tensor([[True, True], [True, False]])
    feats = Features(keys, states, mask, torch.tensor([0, 1]), torch.tensor([True, False]))
    torch.testing.assert_close(cosine_scores(feats), torch.tensor([[1.0, 0.5 ** 0.5], [0.0, 1.0]]))


def test_joint_features_pad_to_the_widest_and_shift_owners_past_earlier_keys() -> None:
    from kedit_vc.editors.serac.classifier import Features

    joint_features = _script("serac_threshold").joint_features
    one = Features(torch.ones(2, 3), torch.ones(1, 2, 3), torch.ones(1, 2, dtype=torch.bool), torch.tensor([1]),
                   torch.tensor([True]))
    two = Features(torch.zeros(1, 3), torch.ones(2, 4, 3), torch.ones(2, 4, dtype=torch.bool), torch.tensor([0, 0]),
                   torch.tensor([False, True]))
    joint = joint_features([one, two])
    assert joint.keys.shape == (3, 3) and joint.states.shape == (3, 4, 3)
    assert joint.mask[0].tolist() == [True, True, False, False] and not bool(joint.states[0, 2:].any())
    assert joint.owner.tolist() == [1, 2, 2] and joint.positive.tolist() == [True, False, True]

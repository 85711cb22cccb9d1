"""`kvc bench` through the CLI with a real editor (ROME) on a tiny random Llama.

The model is the confident tiny Llama of ``test_editors.py`` (initializer range 0.3), so a
ROME edit of 25 target steps moves CounterFact efficacy and a 0-step edit (the target
vector left at the model's own output: a zero update) moves nothing. Three records
written in the tiny tokenizer's words; each run writes its JSON, which is read back.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_kvc

CF = [
    {"case_id": 1, "requested_rewrite": {"prompt": "The {} is located in the city of", "relation_id": "P131",
                                         "target_new": {"str": "Rome", "id": "Q220"},
                                         "target_true": {"str": "Paris", "id": "Q90"}, "subject": "Eiffel Tower"},
     "paraphrase_prompts": ["Tourists travel to see the Eiffel Tower in the city of"],
     "neighborhood_prompts": ["The Louvre is located in the city of", "The Colosseum is located in the city of"],
     "attribute_prompts": [], "generation_prompts": ["The Eiffel Tower is"]},
    {"case_id": 2, "requested_rewrite": {"prompt": "The capital of {} is", "relation_id": "P36",
                                         "target_new": {"str": "Madrid", "id": "Q2807"},
                                         "target_true": {"str": "Paris", "id": "Q90"}, "subject": "France"},
     "paraphrase_prompts": ["The capital city of France is"],
     "neighborhood_prompts": ["The capital of Germany is", "The capital of Italy is"],
     "attribute_prompts": [], "generation_prompts": ["France is"]},
    {"case_id": 3, "requested_rewrite": {"prompt": "{} is the capital of", "relation_id": "P1376",
                                         "target_new": {"str": "China", "id": "Q148"},
                                         "target_true": {"str": "Japan", "id": "Q17"}, "subject": "Tokyo"},
     "paraphrase_prompts": ["Tokyo is the largest city and the capital of"],
     "neighborhood_prompts": ["Seoul is the capital of", "Berlin is the capital of"],
     "attribute_prompts": [], "generation_prompts": ["Tokyo is"]},
]
HPARAMS = ("layer=1", "stats_tokens=600", "context_templates=0", "clamp_norm_factor=4.0")
#: The CounterFact metrics the README's tables report, each a share of prompts.
SHARES = ("reliability_cf", "generalization_cf", "locality_cf", "reliability", "locality_agree")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory):
    from tiny_models import tiny_family_model, tiny_tokenizer

    folder = tmp_path_factory.mktemp("confident-llama")
    model = tiny_family_model("llama", d_model=32, d_mlp=64, vocab=300, layers=3, initializer_range=0.3)
    model.save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer(300).save_pretrained(folder)
    return folder


@pytest.fixture()
def data(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "counterfact_500.json").write_text(json.dumps(CF), encoding="utf-8")
    monkeypatch.setenv("KVC_DATA", str(folder))
    return folder


def bench(model_dir, out, v_steps: int, *mode: str) -> dict:
    """Run ``kvc bench counterfact --n 3 --method rome`` and return the JSON it wrote."""
    args = ["bench", "counterfact", "--n", "3", "--method", "rome", "--model", str(model_dir), "--json", str(out),
            "--hparam", f"v_steps={v_steps}", *mode]
    for hp in HPARAMS:
        args += ["--hparam", hp]
    result = run_kvc(*args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "efficacy score" in result.output
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.parametrize("mode, batch, sequential", [
    (("--batch", "1"), 1, False), (("--batch", "3"), 3, False), (("--sequential",), 1, True)],
    ids=["batch-1", "one-batch", "sequential"])
def test_kvc_bench_with_rome_writes_computed_metrics(data, model_dir, tmp_path, mode, batch, sequential):
    took = bench(model_dir, tmp_path / "took.json", 25, *mode)
    assert (took["benchmark"], took["method"], took["batch"], took["sequential"]) == (
        "counterfact", "rome", batch, sequential)
    report = took["report"]
    assert took["n_cases"] == report["n_edits"] == len(report["rows"]) == 3
    assert all(report["counts"][name] == 3 for name in SHARES), report["counts"]
    assert took["run"]["hparams"]["v_steps"] == 25 and took["run"]["hparams"]["layer"] == 1
    for name in SHARES:
        assert 0.0 <= report["metrics"][name] <= 1.0, (name, report["metrics"])
    # Measured (seeded): efficacy 1.0 one edit at a time, 0.667 as one batch or kept in
    # sequence, against 0.333 before; a zero update leaves every score where it was.
    pre = report["pre_metrics"]
    assert pre["reliability_cf"] == pytest.approx(1 / 3)
    assert report["metrics"]["reliability_cf"] >= pre["reliability_cf"] + 0.3, report["metrics"]

    inert = bench(model_dir, tmp_path / "inert.json", 0, *mode)["report"]
    assert inert["pre_metrics"] == pre  # the same base model scored the same way
    for name in ("reliability_cf", "generalization_cf", "locality_cf"):
        assert inert["metrics"][name] == pytest.approx(pre[name]), (name, inert["metrics"])
    assert inert["metrics"]["reliability_cf"] < report["metrics"]["reliability_cf"]

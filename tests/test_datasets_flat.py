"""CounterFact in EasyEdit's flat format as a benchmark: every record becomes one request
with the field's probes (rewrite/paraphrase target the new object, the neighbour the true one)."""

from __future__ import annotations

import json

from kedit_vc.eval.datasets import FILES, counterfact_flat_case, data_dir, load_cases


def test_every_flat_counterfact_record_converts_with_the_fields_probes():
    records = json.loads((data_dir() / FILES["counterfact5k"]).read_text(encoding="utf-8"))
    cases = load_cases("counterfact5k")
    assert len(cases) == len(records) == 5000
    for record, case in zip(records, cases):
        (request,) = case.requests
        assert request.prompt.replace("{}", request.subject, 1) == record["prompt"]
        assert (request.target_new, request.target_true) == (record["target_new"], record["ground_truth"])
        kinds = {p.kind: p for p in request.probes}
        assert kinds["rewrite"].target == record["target_new"] and kinds["rewrite"].foil == record["ground_truth"]
        assert kinds["paraphrase"].prompt == record["rephrase_prompt"]
        assert kinds["neighbour"].prompt == record["locality_prompt"]
        assert kinds["neighbour"].target == record["locality_ground_truth"]
        assert kinds["neighbour"].foil == record["target_new"]


def test_a_record_whose_prompt_lacks_its_subject_is_refused():
    import pytest

    with pytest.raises(ValueError, match="not in"):
        counterfact_flat_case({"case_id": 7, "subject": "X", "prompt": "Y is in", "target_new": "a",
                               "ground_truth": "b"})

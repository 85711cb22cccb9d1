"""SERAC on the real model, end to end: `kvc train serac` on 40 CounterFact records (import
records 300-339, none of them used by the assertions below), a `method serac` commit of
"Tokyo -> Brazil" beside "Eiffel Tower -> Rome" with ``shots = 1``; `load_edited` answers
"Tokyo is the capital of" with Brazil, and an unrelated prompt ("The capital of Germany is")
gets the base model's logits bit for bit. The classifier routes the Eiffel prompt too
(probability 0.89 against 0.015 for the Tokyo fact), but SmolLM2-135M, the counterfactual
model here (named simplification), keeps answering Paris with that fact in front, as
``test_ike_smollm2`` found for IKE with few demonstrations; so the assertion is on Tokyo.

Training is cached per model fingerprint, settings and data in the user's cache, so a rerun
reuses the classifier (the first run trains for about a minute on one thread)."""

from __future__ import annotations

import pytest
import torch

from conftest import run_kvc
from test_ike_smollm2 import greedy

pytestmark = pytest.mark.slow

SPEC = '''method serac { shots = 1 }
edit "Eiffel Tower" prompt "The {subject} is located in the city of": "Paris" -> "Rome" {
    paraphrase "Tourists travel to see the {subject} in the city of"
}
edit "Tokyo" prompt "{subject} is the capital of": "Japan" -> "Brazil"
'''


def test_a_serac_edit_takes_and_an_unrelated_prompt_is_unchanged(tmp_path):
    from kedit_vc import load_edited
    from kedit_vc.eval.datasets import data_dir
    from kedit_vc.models.prompting import encode_text
    from kedit_vc.ops import CommitOptions, commit_spec, init
    from kedit_vc.patches.attach import side_patches

    data = data_dir() / "counterfact_500.json"  # missing shared data fails the test, as the importer tests do
    out = run_kvc("train", "serac", "--model", "smollm2", "--data", f"counterfact:{data}@300:340",
                  "--steps", "150", "--no-progress")
    assert out.exit_code == 0, out.output
    spec = tmp_path / "eiffel.kedit"
    spec.write_text(SPEC, encoding="utf-8")
    with init(tmp_path / "store", "smollm2") as store:
        assert commit_spec(store, spec, CommitOptions()).sha is not None
        assert store.read_commit("HEAD").patches()[0].settings["classifier"]
    model, tokenizer = load_edited(tmp_path / "store")
    other = torch.tensor([encode_text(tokenizer, "The capital of Germany is")])
    with torch.no_grad():
        assert greedy(model, tokenizer, "Tokyo is the capital of").strip().startswith("Brazil")
        edited = model(input_ids=other).logits
        side_patches(model).clear()
        assert torch.equal(edited, model(input_ids=other).logits)

"""SERAC on the real model, end to end: `kvc train serac` on 40 CounterFact records (import
records 300-339, none of them used by the assertions below), a `method serac` commit of
"Eiffel Tower -> Rome"; `load_edited` answers the rewrite prompt with Rome, and an unrelated
prompt ("The capital of Germany is") gets the base model's logits bit for bit.

Training is cached per model fingerprint, settings and data in the user's cache, so a rerun
reuses the classifier (the first run trains for about a minute on one thread)."""

from __future__ import annotations

import pytest
import torch

from conftest import run_kvc
from test_ike_smollm2 import greedy

pytestmark = pytest.mark.slow

SPEC = '''method serac { }
edit "Eiffel Tower" prompt "The {subject} is located in the city of": "Paris" -> "Rome" {
    paraphrase "Tourists travel to see the {subject} in the city of"
}
'''


def test_a_serac_edit_takes_and_an_unrelated_prompt_is_unchanged(tmp_path):
    from kedit_vc import load_edited
    from kedit_vc.eval.datasets import data_dir
    from kedit_vc.models.prompting import encode_text
    from kedit_vc.ops import CommitOptions, commit_spec, init
    from kedit_vc.patches.attach import side_patches

    data = data_dir() / "counterfact_500.json"
    if not data.is_file():
        pytest.skip(f"{data} not found")
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
        assert greedy(model, tokenizer, "The Eiffel Tower is located in the city of").strip().startswith("Rome")
        edited = model(input_ids=other).logits
        side_patches(model).clear()
        assert torch.equal(edited, model(input_ids=other).logits)

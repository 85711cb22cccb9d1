"""IKE on the real model, end to end: ``kvc commit`` of "Eiffel Tower -> Rome" with method ike
writes an edit memory (no weight changes); ``load_edited`` gives a model whose greedy answer
to the rewrite prompt is Rome while "The Louvre is located in the city of" stays Paris.

The commit holds a second fact (Tokyo -> Brazil) so that IKE has a demonstration pool beyond
the edit's own copy demonstration: with the Eiffel fact alone in the memory, SmolLM2-135M
keeps answering Paris in every format tried (copy demonstration only, EasyEdit's instruction
line, the fact's own update and retain demonstrations), while one demonstration of another
counterfactual fact makes it follow the new fact. The paper draws k=32 demonstrations from a
training set; a store's memory is the pool here.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow

SPEC = '''method ike { k = 8 }
edit "Eiffel Tower" prompt "The {subject} is located in the city of": "Paris" -> "Rome" {
    paraphrase "Tourists travel to see the {subject} in the city of"
    neighbour "Louvre" => "Paris"
}
edit "Tokyo" prompt "{subject} is the capital of": "Japan" -> "Brazil" {
    neighbour "Kyoto" => "Japan"
}
'''


def greedy(model, tokenizer, prompt: str, tokens: int = 3) -> str:  # noqa: ANN001
    from kedit_vc.models.prompting import encode_text

    ids = torch.tensor([encode_text(tokenizer, prompt)])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                         do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert torch.equal(out[0, :ids.shape[1]], ids[0])  # the caller's prompt comes back as given
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_an_ike_commit_makes_the_answer_rome_and_leaves_the_louvre_in_paris(tmp_path):
    from kedit_vc import load_edited
    from kedit_vc.ops import CommitOptions, commit_spec, init

    spec = tmp_path / "eiffel.kedit"
    spec.write_text(SPEC, encoding="utf-8")
    with init(tmp_path / "store", "smollm2") as store:
        result = commit_spec(store, spec, CommitOptions())
        assert result.sha is not None
        record = store.read_commit("HEAD")
        assert record.patch_kinds == ("memory",) and len(record.patches()[0].facts) == 2 and record.delta().updates == {}
        assert store.fsck() == []
    model, tokenizer = load_edited(tmp_path / "store")
    with torch.no_grad():
        assert greedy(model, tokenizer, "The Eiffel Tower is located in the city of").strip().startswith("Rome")
        assert greedy(model, tokenizer, "The Louvre is located in the city of").strip().startswith("Paris")

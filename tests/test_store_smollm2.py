"""The store on the real model: commit three edits, revert the middle one, squash the
other two into one MEMIT batch, and serve the result from plain transformers and peft.

An edit "takes" when every token of its new object is the top prediction after its
rewrite prompt (teacher-forced), i.e. per-edit reliability 1.0.
"""

from __future__ import annotations

import pytest

from conftest import PEFT_LOADER_WARNING

pytestmark = pytest.mark.slow

ROME = "method rome { v_steps = 20 stats_tokens = 4000 context_templates = 5 }"
FACTS = {
    "eiffel": 'edit "Eiffel Tower" prompt "The {subject} is located in the city of": "Paris" -> "Rome"',
    "france": 'edit "France" prompt "The capital of {subject} is": "Paris" -> "Madrid"',
    "tokyo": 'edit "Tokyo" prompt "{subject} is the capital of": "Japan" -> "China"',
}
MEMIT = {"layers": [4, 5, 6], "v_steps": 20, "stats_tokens": 4000, "context_templates": 5,
         "clamp_norm_factor": 4.0, "mom2_weight": 5000.0}  # two facts need more room than the defaults


def takes(scores) -> dict[str, bool]:
    return {e.edit_id: all(p.correct for p in e.probes if p.kind == "rewrite") for e in scores.edits}


@pytest.mark.filterwarnings(PEFT_LOADER_WARNING)
def test_commit_revert_squash_export_on_smollm2(tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kedit_vc.eval.scoring import score_requests
    from kedit_vc.ops import CommitOptions, Evaluator, commit_spec, export, init, live_edits, revert, squash

    store = init(tmp_path, "smollm2")
    ids = {}
    for name, body in FACTS.items():
        spec = tmp_path / f"{name}.kedit"
        spec.write_text(f"{ROME}\n{body}\n")
        result = commit_spec(store, spec, CommitOptions())
        ids[name] = result.plan.requests[0].edit_id
        assert result.report.rows[0].metrics["reliability"] == 1.0, (name, result.report.to_json())

    evaluator = Evaluator(store)
    all_requests = tuple(e.request for e in live_edits(store))
    assert all(takes(evaluator.evaluate().post).values())
    base = evaluator.base_scores(all_requests)

    reverted = revert(store, "HEAD~1")
    assert reverted.stopped == () and reverted.restored == {ids["france"]: True}
    now = evaluator.scores_at(store.head(), all_requests)
    held = takes(now)
    assert held[ids["eiffel"]] and held[ids["tokyo"]] and not held[ids["france"]]
    france = [i for i, e in enumerate(all_requests) if e.edit_id == ids["france"]][0]
    assert now.edits[france].probes[0].argmax_ids == base.edits[france].probes[0].argmax_ids

    # A MEMIT re-solve (not the default exact compose); the gate also keeps raw-prompt checks,
    # which MEMIT's trade-off can miss: accepted knowingly, and only raw-prompt ones may go.
    squashed = squash(store, "HEAD~4..HEAD", hparams=MEMIT, allow_loss=True)
    assert squashed.method == "memit" and set(squashed.edit_ids) == {ids["eiffel"], ids["tokyo"]}
    assert all(loss.check.startswith("raw_") for loss in squashed.losses), squashed.losses
    remaining = tuple(e.request for e in live_edits(store))
    after = evaluator.scores_at(store.head(), remaining)
    assert all(takes(after).values()), squashed.after.to_json()
    assert store.fsck() == []

    export(store, "HEAD", tmp_path / "hf", "hf")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    served = score_requests(plain, tokenizer, remaining)
    assert [p.argmax_ids for e in served.edits for p in e.probes] == \
        [p.argmax_ids for e in after.edits for p in e.probes]

    export(store, "HEAD", tmp_path / "adapter", "peft")
    base_model = AutoModelForCausalLM.from_pretrained(evaluator.loaded.path, dtype=torch.float32).eval()
    adapted = PeftModel.from_pretrained(base_model, tmp_path / "adapter").eval()
    with_lora = score_requests(adapted.get_base_model(), tokenizer, remaining)  # LoRA layers injected
    assert [p.argmax_ids for e in with_lora.edits for p in e.probes] == \
        [p.argmax_ids for e in after.edits for p in e.probes]
    store.close()

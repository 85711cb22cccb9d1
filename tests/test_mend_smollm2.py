"""MEND on the real model: a small editor trained here (SmolLM2, CounterFact records 100..139,
80 steps of 2 facts, into a temporary folder; 5 min wall on the shared 2-core CPU) makes held-out facts take (records 0..4, never
trained on): after each single edit the new object beats the old on the rewrite prompt,
which it does for none of them before."""

from __future__ import annotations

import pytest
import torch

from kedit_vc.eval.datasets import FILES, data_dir

pytestmark = pytest.mark.slow

STEPS = 80
HELD_OUT = 100
TRAIN = 40
#: Weighted towards the edit loss (the bench's editor uses MEND's 0.1) so a short training shows it.
SETTINGS = {"steps": STEPS, "edits_per_step": 2, "lr": 1e-3, "c_edit": 1.0}


def _mean_nll(lm, prompt: str, target: str) -> float:  # noqa: ANN001
    from kedit_vc.editors.common.learned import make_batch, token_nll
    from kedit_vc.editors.common.metatrain import edit_pair
    from kedit_vc.models.forward import final_hidden, logits_from_hidden
    from kedit_vc.models.prompting import pad_id

    batch = make_batch([edit_pair(lm.tokenizer, prompt, target)], pad_id(lm.tokenizer))
    with torch.no_grad():
        hidden = final_hidden(lm.model, batch.input_ids, batch.mask)
        nll = token_nll(logits_from_hidden(lm.model, hidden[batch.rows, batch.cols]), batch)
    return float(nll.mean())


def test_a_small_trained_mend_makes_held_out_facts_take(tmp_path) -> None:  # noqa: ANN001
    from kedit_vc.compiler import compile_text
    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.common.metatrain import TrainSettings
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.importers import import_file
    from kedit_vc.models import load_model
    from kedit_vc.ops.train_editor import train_editor

    torch.set_num_threads(1)
    data = str(data_dir() / FILES["counterfact"])
    lm = load_model("smollm2", progress=False)
    outcome = train_editor("mend", "smollm2", [data], {}, TrainSettings(**SETTINGS), held_out=HELD_OUT,
                           limit=TRAIN, out=str(tmp_path / "mend"), progress=False, loaded=lm)
    training = outcome.record["training"]
    held = compile_text(import_file("counterfact", data, limit=5).text).requests
    assert not {r.edit_id for r in held} & set(training["train_edit_ids"])
    editor, hp = get_editor("mend"), build_hparams("mend", {"editor": str(outcome.folder)})
    before, after = [], []
    params = dict(lm.model.named_parameters())
    for request in held:
        prompt = request.rewrite_prompt
        assert request.target_true is not None
        before.append(_mean_nll(lm, prompt, request.target_new) < _mean_nll(lm, prompt, request.target_true))
        result = editor.edit(lm.model, lm.tokenizer, [request], hp, EditContext(fingerprint=lm.fingerprint,
                                                                                progress=False))
        saved = {name: params[name].detach().clone() for name in result.delta.updates}
        result.delta.apply(lm.model)
        try:
            after.append(_mean_nll(lm, prompt, request.target_new) < _mean_nll(lm, prompt, request.target_true))
        finally:
            with torch.no_grad():
                for name, value in saved.items():
                    params[name].copy_(value)
        assert result.info["trained_editor"] == outcome.editor_hash
        assert all(u.kind == "lowrank" for u in result.delta.updates.values())
    assert sum(before) == 0, before
    assert sum(after) >= 4, (after, training["final"])

"""WISE-lite on the real model: one edit of a CounterFact fact (record 200 of the shared file)
committed through the Python API and HEAD loaded afresh with ``load_edited``: the rewrite
prompt's greedy answer is the new object, and unrelated prompts stay on the main memory
(bit-identical logits, so the same greedy answer)."""

from __future__ import annotations

import time

import pytest
import torch

from test_grace_smollm2 import counterfact_requests

pytestmark = pytest.mark.slow

UNRELATED = ("The capital of Japan is", "Water is made of hydrogen and")


def test_a_wise_edit_takes_at_the_greedy_answer_and_leaves_unrelated_prompts_alone(tmp_path):
    from kedit_vc import load_edited
    from kedit_vc.cli.model_commands import greedy_completion
    from kedit_vc.compiler.plan import EditorCall, Plan
    from kedit_vc.editors.base import EditContext, get_editor
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.models.prompting import encode_text
    from kedit_vc.ops import init
    from kedit_vc.ops.weights import load_base
    from kedit_vc.patches.attach import side_patches
    from kedit_vc.store import CommitInput

    started = time.perf_counter()
    (request,) = counterfact_requests(tmp_path, 200, 1)
    store = init(tmp_path / "store", "smollm2")
    loaded = load_base(store)
    prompt = request.prompt.replace("{}", request.subject)
    before = {text: greedy_completion(loaded.model, loaded.tokenizer, text, 3) for text in (prompt, *UNRELATED)}
    assert not before[prompt].strip().startswith(request.target_new)
    result = get_editor("wise").edit(loaded.model, loaded.tokenizer, [request], build_hparams("wise", {}),
                                     EditContext(fingerprint=store.fingerprint, progress=False))
    store.write_commit(CommitInput(
        f"wise: {request.subject} -> {request.target_new}", delta=result.delta, patches=result.patches,
        plan=Plan(calls=(EditorCall("wise", {}, (request,)),)).to_json(), method="wise",
        edit_ids=(request.edit_id,), extra={"editor_info": [dict(result.info)]}))
    assert store.fsck() == []

    model, tokenizer = load_edited(store.paths.root, "HEAD")
    assert greedy_completion(model, tokenizer, prompt, 3).strip().startswith(request.target_new), result.info
    for text in UNRELATED:
        ids = torch.tensor([encode_text(tokenizer, text)])
        with torch.no_grad():
            edited = model(input_ids=ids).logits
            live = list(side_patches(model).patches)
            side_patches(model).clear()  # the plain base model: no side memory
            plain = model(input_ids=ids).logits
            side_patches(model).set(live)
        assert torch.equal(edited, plain), text
        assert greedy_completion(model, tokenizer, text, 3) == before[text]
    print(f"\nWISE edit {result.info['seconds']:.1f} s, steps {result.info['edits'][0]['steps']}, "
          f"threshold {result.info['threshold']:.2f}; total {time.perf_counter() - started:.1f} s")

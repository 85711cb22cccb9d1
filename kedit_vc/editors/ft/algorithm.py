"""FT-L: constrained fine-tuning of one MLP output projection (the field's baseline).

Adam on the matrix itself to lower the new object's NLL after the bare prompt, with
every weight kept within ``norm_constraint`` of its original value (an L∞ ball, as in
the ROME paper's FT+L baseline). The result is a dense delta: fine-tuning has no
low-rank structure to keep.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.delta import Delta, Dense
from kedit_vc.editors.base import EditContext, EditResult
from kedit_vc.editors.common.positions import fill
from kedit_vc.editors.common.progress import step_reporter
from kedit_vc.models.families import family_of, get_module, weight_of
from kedit_vc.models.forward import LowerBlockReplay, final_hidden, logits_from_hidden
from kedit_vc.models.prompting import encode_continuation, encode_text, pad_batch, pad_id

from .hparams import FtHparams, resolve


def _target_positions(tokenizer: Any, requests: Sequence[EditRequest]):  # noqa: ANN202
    """Sequences (prompt + target[:-1]) and, per target token, (row, column, id, 1/len)."""
    seqs, rows, cols, ids, weights = [], [], [], [], []
    for row, request in enumerate(requests):
        prompt = encode_text(tokenizer, fill(request.prompt, request.subject))
        target = encode_continuation(tokenizer, " " + request.target_new)
        for j, token in enumerate(target):
            rows.append(row)
            cols.append(len(prompt) - 1 + j)
            ids.append(token)
            weights.append(1.0 / len(target))
        seqs.append(prompt + target[:-1])
    input_ids, mask = pad_batch(seqs, pad_id(tokenizer))
    return input_ids, mask, torch.tensor(rows), torch.tensor(cols), torch.tensor(ids), torch.tensor(weights)


class FtEditor:
    name = "ft"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: FtHparams, context: EditContext) -> EditResult:
        hp = resolve(model, hparams)
        family = family_of(model)
        assert hp.layer is not None  # resolve() fills the model's default
        weight = weight_of(get_module(model, family.mlp_out_path(hp.layer)))
        original = weight.detach().clone()
        input_ids, mask, rows, cols, target_ids, token_weights = _target_positions(tokenizer, requests)
        started = time.perf_counter()
        was_trainable = weight.requires_grad
        weight.requires_grad_(True)
        optimiser = torch.optim.Adam([weight], lr=hp.lr)
        losses: list[float] = []
        try:
            with LowerBlockReplay(model, hp.layer) as replay, step_reporter(
                    f"FT-L on {len(requests)} edits", hp.steps, context.progress) as report:
                for step in range(hp.steps):
                    optimiser.zero_grad()
                    hidden = final_hidden(model, input_ids, mask)
                    replay.arm()
                    logits = logits_from_hidden(model, hidden[rows, cols])
                    nll = -F.log_softmax(logits.float(), -1).gather(-1, target_ids[:, None])[:, 0]
                    loss = (nll * token_weights).sum() / len(requests)
                    losses.append(float(loss.detach()))
                    if report is not None:
                        report(step, losses[-1])
                    if losses[-1] < 1e-2:
                        break
                    loss.backward()
                    optimiser.step()
                    with torch.no_grad():
                        bound = hp.norm_constraint
                        weight.copy_(torch.clamp(weight, original - bound, original + bound))
            change = (weight.detach() - original).clone()
        finally:
            with torch.no_grad():
                weight.copy_(original)
            weight.requires_grad_(was_trainable)
            weight.grad = None
        info = {"layer": hp.layer, "steps": len(losses), "final_nll": losses[-1],
                "value_seconds": round(time.perf_counter() - started, 3)}
        delta = Delta(updates={family.mlp_out_weight_name(hp.layer): Dense(value=change.contiguous())},
                      meta={"method": "ft", "layer": str(hp.layer)})
        return EditResult(delta=delta, info=info)

"""Knowledge Neurons (Dai et al., ACL 2022, arXiv 2104.08696): locate, then rewrite.

For each request: attribute the old answer (``target_true``; the model's own greedy
token when unknown) at the end of the rewrite prompt, under ``prompts`` generated
prefixes, to MLP neurons by integrated gradients (``attribution.py``); keep the neurons
the adaptive threshold selects on most prompts; then, as the paper's "updating facts",
move each kept neuron's value vector (its column of the MLP output projection, [d_model])
by ``−λ₁·e_old + λ₂·e_new``, where ``e`` is the answer's output embedding.

The patch touches only those columns: per layer a ``LowRank`` pair whose right factor is
one-hot columns [d_mlp, r] and whose left factor holds the column changes [d_model, r].
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.delta import Delta
from kedit_vc.editors.base import EditContext, EditResult
from kedit_vc.editors.common.positions import fill
from kedit_vc.editors.common.solve import factored_update
from kedit_vc.editors.common.templates import context_templates
from kedit_vc.errors import EditError
from kedit_vc.models.families import dimensions, family_of, get_module, weight_of
from kedit_vc.models.forward import final_hidden, logits_from_hidden
from kedit_vc.models.prompting import encode_continuation, encode_text

from .attribution import integrated_gradients, refine
from .hparams import KnHparams, resolve


def answer_token(tokenizer: Any, answer: str, request: EditRequest) -> int:
    ids = encode_continuation(tokenizer, " " + answer)
    if not ids:
        raise EditError(f"edit {request.edit_id}: the answer {answer!r} encodes to no token")
    return ids[0]


def output_embedding(model: torch.nn.Module, token: int) -> torch.Tensor:
    """The LM head's row of ``token``: [d_model] (float32)."""
    return weight_of(get_module(model, family_of(model).unembed))[token].detach().float()


def knowledge_neurons(model: torch.nn.Module, tokenizer: Any, request: EditRequest, templates: Sequence[str],
                      hp: KnHparams) -> tuple[list[tuple[int, int]], int]:
    """The request's knowledge neurons as ``(block, neuron)`` pairs, and the old answer's token."""
    assert hp.layers is not None
    layers = sorted(hp.layers)
    texts = [fill(fill(template, request.prompt), request.subject) for template in templates]
    if request.target_true:
        old = answer_token(tokenizer, request.target_true, request)
    else:
        with torch.no_grad():
            hidden = final_hidden(model, torch.tensor([encode_text(tokenizer, texts[0])]))[:, -1]
            old = int(logits_from_hidden(model, hidden).argmax())
    scores = [integrated_gradients(model, encode_text(tokenizer, text), old, layers, hp.ig_steps)
              for text in texts]
    picked = refine(scores, hp.threshold, hp.share, hp.max_neurons)
    return [(layers[row], neuron) for row, neuron in picked], old


def column_delta(model: torch.nn.Module, changes: dict[int, dict[int, torch.Tensor]]) -> Delta:
    """A patch adding ``changes[layer][neuron]`` [d_model] to those MLP value columns only."""
    family = family_of(model)
    d_mlp = dimensions(model).d_mlp
    updates = {}
    for layer in sorted(changes):
        neurons = sorted(changes[layer])
        left = torch.stack([changes[layer][i] for i in neurons], dim=1)     # [d_model, r]
        right = torch.zeros(d_mlp, len(neurons))                            # [d_mlp, r] one-hot
        right[neurons, torch.arange(len(neurons))] = 1.0
        updates[family.mlp_out_weight_name(layer)] = factored_update(left, right, family.mlp_out_transposed)
    return Delta(updates=updates)


class KnEditor:
    name = "kn"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: KnHparams, context: EditContext) -> EditResult:
        hp = resolve(model, hparams)
        started = time.perf_counter()
        templates = context_templates(model, tokenizer, hp.prompts, hp.context_length)
        changes: dict[int, dict[int, torch.Tensor]] = defaultdict(dict)
        found: list[list[list[int]]] = []
        for request in requests:
            neurons, old = knowledge_neurons(model, tokenizer, request, templates, hp)
            new = answer_token(tokenizer, request.target_new, request)
            assert hp.write_weight is not None  # resolve() fills it
            move = hp.write_weight * output_embedding(model, new) - hp.erase_weight * output_embedding(model, old)
            for layer, neuron in neurons:
                previous = changes[layer].get(neuron)
                changes[layer][neuron] = move if previous is None else previous + move
            found.append([[layer, neuron] for layer, neuron in neurons])
        delta = column_delta(model, changes)
        delta = Delta(updates=dict(delta.updates),
                      meta={"method": "kn", "layers": ",".join(map(str, sorted(changes)))})
        info = {"neurons": found, "edit_seconds": round(time.perf_counter() - started, 3)}
        return EditResult(delta=delta, written_keys={}, info=info, fingerprint=context.fingerprint)

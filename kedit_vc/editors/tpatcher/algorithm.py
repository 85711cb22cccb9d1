"""T-Patcher (Huang et al., ICLR 2023, arXiv 2301.09785): a neuron per mistake.

For each request, one neuron (key ``k`` [d], bias ``b``, value ``v`` [d]) is added beside
block ``L``'s MLP (the last by default): at every token the MLP's output gains
``relu(x·k + b) · v`` for the MLP's input ``x``. As in the paper the key starts at
``q / |q|²`` for the edit's query ``q`` (activation 1 there), and the neuron is trained
with Adam on

    L = L_edit + a · L_act + m · L_mem,

``L_edit``: the target's NLL after the prompt (teacher-forced); ``L_act``: the mean
positive part of ``β − act`` over the edit's positions (the prompt's last token and the
target's, the query positions); ``L_mem``: on memory tokens ``q_i`` (the MLP's inputs on
model-generated text, the paper's memory of unrelated inputs), the positive parts of
``q_i·k + b − α`` (silent) and of ``q_i·k + b − act_e + gap`` (the edit fires above
every memory), each a mean over its positive entries as in the reference.

Deviations: ReLU rather than the FFN's own activation (a gated MLP has no single
activation, and ReLU makes a silent neuron contribute exactly zero); the memory is
generated text plus the edit's declared neighbour prompts (``neighbour_memory``: same
relation, other subjects) and its relation prompt under stand-in subjects
(``template_memory``) rather than the training set; training stops once the target is the
argmax at every position and both margins hold. The weights are never touched: the
delta is empty and the neurons are a ``neurons`` patch (``kedit_vc.patches.neurons``).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.delta import Delta
from kedit_vc.editors.base import EditContext, EditResult
from kedit_vc.editors.common.positions import fill, neighbour_texts, other_subject_prompts
from kedit_vc.editors.common.templates import context_templates
from kedit_vc.errors import EditError
from kedit_vc.models.families import family_of, get_module
from kedit_vc.models.forward import final_hidden, logits_from_hidden
from kedit_vc.models.hooks import record_inputs
from kedit_vc.models.prompting import encode_continuation, encode_text
from kedit_vc.patches.neurons.core import NeuronPatch
from kedit_vc.patches.neurons.live import neuron_activations

from .hparams import TpatcherHparams, resolve


def _positive_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of the positive entries (0 when none): the reference's margin loss."""
    positive = x[x > 0]
    return positive.mean() if positive.numel() else x.new_zeros(())


@torch.no_grad()
def memory_queries(model: torch.nn.Module, tokenizer: Any, mlp: torch.nn.Module, hp: TpatcherHparams) -> torch.Tensor:
    """The MLP's inputs at every token of the generated memory texts: [m, d] (float32)."""
    texts = [t.replace(". {}", "") for t in context_templates(model, tokenizer, hp.memory_texts,
                                                                hp.memory_length)[1:]]
    return text_queries(model, tokenizer, mlp, texts)


@torch.no_grad()
def text_queries(model: torch.nn.Module, tokenizer: Any, mlp: torch.nn.Module, texts: Sequence[str]) -> torch.Tensor:
    """The MLP's inputs at every token of ``texts``: [m, d] (float32; m = 0 for no texts)."""
    rows = []
    for text in texts:
        with record_inputs({"mlp": mlp}) as seen:
            final_hidden(model, torch.tensor([encode_text(tokenizer, text)]))
        rows.append(seen["mlp"][0].float())
    if not rows:
        width = int(getattr(model.config, "hidden_size", getattr(model.config, "n_embd", 0)))
        return torch.zeros(0, width)
    return torch.cat(rows)


def train_neuron(model: torch.nn.Module, mlp: torch.nn.Module, sequences: Sequence[tuple[list[int], int]],
                 target: list[int], memory: torch.Tensor, hp: TpatcherHparams,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Train one neuron on ``sequences``: (ids = prompt + target[:-1], prompt length) each, the
    bare prompt first (its query initialises the key); returns (key [d], bias [], value [d], info)."""
    queries_per = []
    for ids, n_prompt in sequences:
        with torch.no_grad(), record_inputs({"mlp": mlp}) as seen:
            final_hidden(model, torch.tensor([ids]))
        queries_per.append(seen["mlp"][0, n_prompt - 1:].float())   # [t, d] the positions predicting the target
    queries = torch.cat(queries_per)                                  # [s * t, d]
    first = queries_per[0][0]
    key = (first / first.norm() ** 2).clone().requires_grad_()
    bias = torch.zeros((), requires_grad=True)
    value = torch.zeros_like(first, requires_grad=True)
    optimiser = torch.optim.Adam([key, bias, value], lr=hp.lr)
    target_ids = torch.tensor(target)
    state = {"k": key, "b": bias, "v": value}

    def add_neuron(_module: torch.nn.Module, args: tuple, output: Any) -> Any:
        acts = neuron_activations(args[0], state["k"][None], state["b"][None])   # [1, T, 1]
        return output + (acts @ state["v"][None]).to(output.dtype)

    info: dict[str, Any] = {"steps": 0, "prompts": len(sequences)}
    handle = mlp.register_forward_hook(add_neuron)
    try:
        for step in range(hp.steps):
            optimiser.zero_grad()
            with torch.enable_grad():
                nll, hit = torch.zeros(()), True
                for ids, n_prompt in sequences:
                    hidden = final_hidden(model, torch.tensor([ids]))[0, n_prompt - 1:]
                    logits = logits_from_hidden(model, hidden).float()
                    nll = nll + F.cross_entropy(logits, target_ids) / len(sequences)
                    hit = hit and bool((logits.argmax(-1) == target_ids).all())
                pre_edit = queries @ key + bias                      # [s * t]
                pre_memory = memory @ key + bias                     # [m]
                act_loss = _positive_mean(hp.act_margin - pre_edit)
                silent = _positive_mean(pre_memory - hp.memory_margin)
                gap = _positive_mean(pre_memory[:, None] - pre_edit[None] + hp.gap_margin)
                loss = nll + hp.act_weight * act_loss + hp.memory_weight * (silent + gap)
            info.update(steps=step, nll=round(float(nll.detach()), 4),
                        memory_max=round(float(pre_memory.detach().max()), 4),
                        edit_min=round(float(pre_edit.detach().min()), 4))
            if hit and float((act_loss + silent + gap).detach()) == 0.0:
                break
            loss.backward()
            optimiser.step()
    finally:
        handle.remove()
    return key.detach(), bias.detach(), value.detach(), info


class TpatcherEditor:
    name = "tpatcher"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: TpatcherHparams, context: EditContext) -> EditResult:
        hp = resolve(model, hparams)
        assert hp.layer is not None
        started = time.perf_counter()
        path = family_of(model).mlp_path(hp.layer)
        mlp = get_module(model, path)
        generated = memory_queries(model, tokenizer, mlp, hp)
        templates = context_templates(model, tokenizer, hp.prompts, hp.context_length, seed=2)
        keys, biases, values, ids, infos = [], [], [], [], []
        for request in requests:
            target = encode_continuation(tokenizer, " " + request.target_new)
            if not target:
                raise EditError(f"edit {request.edit_id}: the target {request.target_new!r} encodes to no token")
            prompts = [encode_text(tokenizer, template.replace("{}", fill(request.prompt, request.subject), 1))
                       for template in templates]                  # the bare prompt first
            sequences = [(prompt + target[:-1], len(prompt)) for prompt in prompts]
            neighbours = text_queries(model, tokenizer, mlp, neighbour_texts(request, hp.neighbour_memory)
                                      + other_subject_prompts(request, hp.template_memory))
            memory = torch.cat([generated, neighbours])
            key, bias, value, info = train_neuron(model, mlp, sequences, target, memory, hp)
            info["neighbour_tokens"] = int(neighbours.shape[0])
            keys.append(key)
            biases.append(bias)
            values.append(value)
            infos.append(info)
            digest = hashlib.sha256(f"{path}|{request.edit_id}|".encode())
            digest.update(key.numpy().tobytes())
            ids.append(digest.hexdigest()[:16])
        patch = NeuronPatch(module=path, width=int(keys[0].shape[0]), ids=tuple(ids), keys=torch.stack(keys),
                            biases=torch.stack(biases), values=torch.stack(values),
                            meta={"method": "tpatcher", "layer": str(hp.layer)})
        info = {"layer": hp.layer, "neurons": infos, "memory_tokens": int(generated.shape[0]),
                "edit_seconds": round(time.perf_counter() - started, 3)}
        return EditResult(delta=Delta(updates={}, meta={"method": "tpatcher"}), info=info,
                          fingerprint=context.fingerprint, patches=(patch,))

"""CaliNet (Dong et al., Findings of EMNLP 2022, arXiv 2210.03329): a calibration memory.

Beside the MLP of each chosen block a set of ``slots`` is added in the FFN's own form:
for the MLP's input ``x`` [d] at every token, slot ``i``'s activation is
``act(x·k_i) * (x·u_i)`` for a gated MLP (Llama, Qwen, Gemma: ``act`` is the model's own,
silu or gelu-tanh) or ``act(x·k_i)`` for an ungated one (GPT-2), and the MLP's output gains
``Σ_i a_i v_i``. The base model is frozen; the slots' keys ``K``, ups ``U`` [slots, d] and
values ``V`` [slots, d] are trained with Adam on

    L = NLL(target | prompt, over the training prompts) + w · mean_t |s(q_t)|² / mean_t |m(q_t)|²,

the paper's loss on the facts (teacher-forced target tokens after each prompt) plus our
keep term: the slots' output ``s`` on the MLP inputs ``q_t`` of generated text, relative to
the MLP's own output ``m`` there; and ``n · KL(base || edited)`` of the next token after
each of the edits' declared neighbour prompts (``neighbour_keep`` per edit: same relation,
other subjects, the prompts slots at the last MLP otherwise learn to answer too). Values
start at zero, so a fresh memory adds nothing.

A slot is exactly one more intermediate neuron of its MLP (no bias, the same activation),
as in the paper's "FFN-like" calibration memory. Deviations (also in ``--help``): one
memory per commit (a commit's edits are trained together, as the paper trains all its
facts at once); prompts are the rewrite prompt under generated prefixes; the keep term.
The weights are never touched: the delta is empty and the slots are a ``neurons`` patch per
layer (``kedit_vc.patches.neurons``, format version 2: activation and gated recorded).
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
from kedit_vc.editors.common.positions import fill, neighbour_probes, other_subject_prompts
from kedit_vc.editors.common.templates import context_templates
from kedit_vc.errors import EditError
from kedit_vc.models.families import family_of, get_module
from kedit_vc.models.forward import final_hidden, logits_from_hidden
from kedit_vc.models.hooks import record_inputs, record_outputs
from kedit_vc.models.prompting import encode_continuation, encode_text, pad_batch, pad_id
from kedit_vc.patches.neurons.core import NeuronPatch
from kedit_vc.patches.neurons.live import neuron_activations
from kedit_vc.patches.neurons.widen import ACTIVATION_NAMES, hf_activation, mlp_activation

from .hparams import CalinetHparams, resolve


def ffn_form(model: torch.nn.Module) -> tuple[str, bool]:
    """(activation, gated) of the model's MLP: the form the slots take."""
    activation = mlp_activation(model.config)
    if activation is None:
        raise EditError(f"calinet: the model's MLP activation {hf_activation(model.config)!r} is not one of "
                        f"{', '.join(sorted(ACTIVATION_NAMES))}; use another method for this model")
    return activation, family_of(model).name == "llama"


def _training_batch(tokenizer: Any, requests: Sequence[EditRequest], templates: Sequence[str], pad: int,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, T] of prompt + target[:-1] per (request, template), with the
    (row, position) pairs predicting each target token [N, 2] and those tokens [N]."""
    rows: list[list[int]] = []
    where: list[tuple[int, int]] = []
    targets: list[int] = []
    for request in requests:
        target = encode_continuation(tokenizer, " " + request.target_new)
        if not target:
            raise EditError(f"edit {request.edit_id}: the target {request.target_new!r} encodes to no token")
        for template in templates:
            prompt = encode_text(tokenizer, fill(fill(template, request.prompt), request.subject))
            row = len(rows)
            rows.append(prompt + target[:-1])
            where += [(row, len(prompt) - 1 + j) for j in range(len(target))]
            targets += target
    # Right padding needs no mask: a causal model's real tokens never attend to later pads.
    ids, _ = pad_batch(rows, pad)
    return ids, torch.tensor(where), torch.tensor(targets)


@torch.no_grad()
def memory_states(model: torch.nn.Module, tokenizer: Any, mlps: dict[str, torch.nn.Module], texts: Sequence[str],
                  ) -> dict[str, tuple[torch.Tensor, float]]:
    """Per MLP path: its inputs on every token of ``texts`` [m, d] and the mean squared norm
    of its own output there (the keep term's scale)."""
    inputs: dict[str, list[torch.Tensor]] = {name: [] for name in mlps}
    scale: dict[str, list[torch.Tensor]] = {name: [] for name in mlps}
    for text in texts:
        ids = torch.tensor([encode_text(tokenizer, text)])
        with record_inputs(mlps) as seen, record_outputs(mlps) as out:
            final_hidden(model, ids)
        for name in mlps:
            inputs[name].append(seen[name][0].float())
            scale[name].append(out[name][0].float().pow(2).sum(-1))
    return {name: (torch.cat(inputs[name]), float(torch.cat(scale[name]).mean())) for name in mlps}


@torch.no_grad()
def neighbour_batch(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest], limit: int,
                    templated: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Up to ``limit`` declared neighbour prompts per request and its relation prompt filled
    with ``templated`` stand-in subjects: right-padded ids [n, T], each one's last position
    [n] and the unedited model's next-token log-probabilities there [n, vocab] (None when
    there are none). Call before any slot is attached."""
    prompts = [p.prompt for request in requests for p in neighbour_probes(request, limit)]
    prompts += [text for request in requests for text in other_subject_prompts(request, templated)]
    if not prompts:
        return None
    rows = [encode_text(tokenizer, prompt) for prompt in prompts]
    ids, _ = pad_batch(rows, pad_id(tokenizer))   # right padding: real tokens never attend to later pads
    last = torch.tensor([len(row) - 1 for row in rows])
    hidden = final_hidden(model, ids)[torch.arange(len(rows)), last]
    return ids, last, logits_from_hidden(model, hidden).float().log_softmax(-1)


def train_slots(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest], paths: Sequence[str],
                hp: CalinetHparams, seed: int,
                ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]], dict[str, Any]]:
    """Train one slot memory per MLP path; returns path -> (keys, ups or None, values) and info."""
    activation, gated = ffn_form(model)
    mlps = {path: get_module(model, path) for path in paths}
    width = int(getattr(model.config, "hidden_size", getattr(model.config, "n_embd", 0)))
    templates = context_templates(model, tokenizer, hp.prompts, hp.context_length)
    ids, where, targets = _training_batch(tokenizer, requests, templates, pad_id(tokenizer))
    generated = [t.replace(". {}", "") for t in context_templates(model, tokenizer, hp.memory_texts,
                                                                    hp.memory_length, seed=1)[1:]]
    memory = memory_states(model, tokenizer, mlps, generated) if hp.keep_weight > 0 else {}
    neighbours = neighbour_batch(model, tokenizer, requests, hp.neighbour_keep, hp.template_keep)
    generator = torch.Generator().manual_seed(seed)
    std = hp.init_scale / width ** 0.5
    params: dict[str, dict[str, torch.Tensor]] = {}
    for path in paths:
        slot = {"k": (torch.randn(hp.slots, width, generator=generator) * std).requires_grad_(),
                "v": torch.zeros(hp.slots, width, requires_grad=True)}
        if gated:
            slot["u"] = (torch.randn(hp.slots, width, generator=generator) * std).requires_grad_()
        params[path] = slot
    zero_bias = torch.zeros(hp.slots)
    optimiser = torch.optim.Adam([t for slot in params.values() for t in slot.values()], lr=hp.lr)

    def slot_output(path: str, inputs: torch.Tensor) -> torch.Tensor:
        slot = params[path]
        acts = neuron_activations(inputs, slot["k"], zero_bias, activation, slot.get("u"))
        return acts @ slot["v"]

    def hook_for(path: str) -> Any:
        def hook(_module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            return output + slot_output(path, args[0]).to(output.dtype)
        return hook

    info: dict[str, Any] = {"steps": 0, "prompts": int(ids.shape[0]), "activation": activation, "gated": gated}
    handles = [mlps[path].register_forward_hook(hook_for(path)) for path in paths]
    try:
        for step in range(hp.steps):
            optimiser.zero_grad()
            with torch.enable_grad():
                hidden = final_hidden(model, ids)[where[:, 0], where[:, 1]]       # [N, d]
                logits = logits_from_hidden(model, hidden).float()
                nll = F.cross_entropy(logits, targets)
                keep = sum((slot_output(path, memory[path][0]).pow(2).sum(-1).mean() / memory[path][1]
                            for path in memory), torch.zeros(()))
                kl = torch.zeros(())
                if neighbours is not None:
                    nb_ids, nb_last, nb_base = neighbours
                    nb_hidden = final_hidden(model, nb_ids)[torch.arange(len(nb_last)), nb_last]
                    nb_now = logits_from_hidden(model, nb_hidden).float().log_softmax(-1)
                    kl = (nb_base.exp() * (nb_base - nb_now)).sum(-1).mean()
                loss = nll + hp.keep_weight * keep + hp.neighbour_weight * kl
            info.update(steps=step, nll=round(float(nll.detach()), 4), keep=round(float(keep.detach()), 6),
                        neighbour_kl=round(float(kl.detach()), 6))
            if (bool((logits.argmax(-1) == targets).all()) and float(nll.detach()) < hp.stop_nll
                    and float(kl.detach()) <= hp.stop_kl):
                break
            loss.backward()
            optimiser.step()
    finally:
        for handle in handles:
            handle.remove()
    out = {path: (slot["k"].detach(), slot["u"].detach() if gated else None, slot["v"].detach())
           for path, slot in params.items()}
    return out, info


class CalinetEditor:
    name = "calinet"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: CalinetHparams, context: EditContext) -> EditResult:
        hp = resolve(model, hparams)
        assert hp.layers is not None
        started = time.perf_counter()
        family = family_of(model)
        paths = [family.mlp_path(layer) for layer in sorted(set(hp.layers))]
        digest = hashlib.sha256("|".join(r.edit_id for r in requests).encode())
        seed = int.from_bytes(digest.digest()[:4], "little")
        slots, info = train_slots(model, tokenizer, requests, paths, hp, seed)
        activation, gated = info["activation"], info["gated"]
        patches = []
        for path, (keys, ups, values) in slots.items():
            tag = hashlib.sha256(f"{path}|{digest.hexdigest()}|".encode() + values.numpy().tobytes()).hexdigest()
            patches.append(NeuronPatch(
                module=path, width=int(keys.shape[1]), ids=tuple(f"{tag[:12]}-{i}" for i in range(len(keys))),
                keys=keys, biases=torch.zeros(len(keys)), values=values, activation=activation, gated=gated,
                ups=ups, meta={"method": "calinet", "edits": str(len(requests))}))
        info.update(layers=list(hp.layers), slots=hp.slots, edit_seconds=round(time.perf_counter() - started, 3))
        return EditResult(delta=Delta(updates={}, meta={"method": "calinet"}), info=info,
                          fingerprint=context.fingerprint, patches=tuple(patches))

"""UltraEdit (Gu et al. 2025, arXiv 2505.14679): lifelong editing without training,
subject positions, covariance statistics or an optimisation loop.

For a turn of facts (all requests of one call):
1. One forward and backward pass per mini-batch of ``prompt + answer`` sequences, loss =
   the answer tokens' mean cross-entropy. At every edited projection and every cached
   token (``tokens = all``: the whole sequence, the reference's "mask") we keep the input
   hidden state ``k`` [d_in] and the loss gradient at the output ``g`` [d_out].
2. Lifelong normalisation: the turn's features ``x = [k; g]`` are added to the running
   statistics of their weight shape (carried by the history, ``normalise.py``), then
   normalised: ``[k̂; ĝ] = (x − mean) / std``.
3. Pseudo-values ``v = −lr · |k̂|² · ĝ`` and the closed-form shift
   ``ΔWᵀ = (KᵀK + I)⁻¹ KᵀV`` with the raw keys K [N, d_in], per projection.

Deviations from the reference, all stated in ``--help``: the statistics are exact sums
(n, Σx, Σx²) rather than its running update (whose variance term differs by a factor
m/(m−1) per mini-batch), and ``raw_copies`` also caches each fact without the prompt
prefix token (our prompts carry one for keys and evaluation; users type none).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.delta import Delta, Dense, LowRank
from kedit_vc.editors.base import EditContext, EditResult
from kedit_vc.editors.common.solve import factored_update
from kedit_vc.models.families import Family, family_of, get_module
from kedit_vc.models.forward import final_hidden, logits_from_hidden
from kedit_vc.models.prompting import encode_continuation, encode_text, pad_batch, pad_id

from . import normalise as norm
from .hparams import UltraEditHparams, resolve


def module_paths(family: Family, hp: UltraEditHparams) -> list[str]:
    """Dotted paths of the edited projections, block by block."""
    role = {"mlp_in": family.mlp_in, "mlp_out": family.mlp_out}
    assert hp.layers is not None
    return [f"{family.block_path(layer)}.{role[m]}" for layer in hp.layers for m in hp.modules]


def fact_sequences(tokenizer: Any, requests: Sequence[EditRequest], raw_copies: bool
                   ) -> list[tuple[list[int], int, int]]:
    """(token ids of prompt + answer, answer length, prefix length) per cached sequence."""
    out = []
    for request in requests:
        text = request.prompt.replace("{}", request.subject, 1)
        answer = encode_continuation(tokenizer, " " + request.target_new)
        if not answer:
            raise ValueError(f"empty target for edit {request.edit_id}")
        prefixed = encode_text(tokenizer, text)
        raw = list(tokenizer(text, add_special_tokens=True).input_ids)
        out.append((prefixed + answer, len(answer), len(prefixed) - len(raw)))
        if raw_copies and raw != prefixed:
            out.append((raw + answer, len(answer), 0))
    return out


@contextmanager
def _frozen(model: torch.nn.Module) -> Iterator[None]:
    """No parameter gradients: the backward pass stops at the first edited projection."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def trace_features(model: torch.nn.Module, tokenizer: Any, sequences: Sequence[tuple[list[int], int, int]],
                   paths: Sequence[str], tokens: str, batch_size: int
                   ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """path -> (keys [N, d_in], gradients [N, d_out]) at the cached tokens of every sequence."""
    keys: dict[str, list[torch.Tensor]] = {p: [] for p in paths}
    grads: dict[str, list[torch.Tensor]] = {p: [] for p in paths}
    step: dict[str, Any] = {}

    def hook(path: str):  # noqa: ANN202
        def forward(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> Any:
            select = step["select"]
            keys[path].append(inputs[0].detach()[select].float())
            if not output.requires_grad:  # the first edited projection: start the graph here
                output = output.detach().requires_grad_(True)
            output.register_hook(lambda g: grads[path].append(g.detach()[select].float()))
            return output
        return forward

    handles = [get_module(model, p).register_forward_hook(hook(p)) for p in paths]
    was_training = model.training
    model.eval()
    try:
        with _frozen(model), torch.enable_grad():
            for start in range(0, len(sequences), batch_size):
                chunk = sequences[start:start + batch_size]
                ids, mask = pad_batch([s for s, _, _ in chunk], pad_id(tokenizer))
                rows, cols, targets = [], [], []
                answer_mask = torch.zeros_like(mask, dtype=torch.bool)
                content = mask.bool().clone()
                for row, (seq, n_answer, n_prefix) in enumerate(chunk):
                    content[row, :n_prefix] = False
                    for j in range(len(seq) - n_answer, len(seq)):
                        rows.append(row)
                        cols.append(j - 1)
                        targets.append(seq[j])
                        answer_mask[row, j - 1] = True  # the position that predicts answer token j
                step["select"] = {"all": mask.bool(), "content": content, "answer": answer_mask}[tokens]
                # The LM head at the answer positions only: the same loss, without [b, t, vocab] logits.
                hidden = final_hidden(model, ids, mask)                          # [b, t, d_model]
                logits = logits_from_hidden(model, hidden[rows, cols]).float()   # [answer tokens, vocab]
                loss = F.cross_entropy(logits, torch.tensor(targets, device=logits.device))
                loss.backward()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    # Gradients arrive per backward pass in reverse module order; each list is per path.
    return {p: (torch.cat(keys[p]), torch.cat(grads[p])) for p in paths}


class UltraEditEditor:
    name = "ultraedit"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: UltraEditHparams, context: EditContext) -> EditResult:
        hp = resolve(model, hparams)
        family = family_of(model)
        paths = module_paths(family, hp)
        started = time.perf_counter()
        sequences = fact_sequences(tokenizer, requests, hp.raw_copies)
        features = trace_features(model, tokenizer, sequences, paths, hp.tokens, hp.batch_size)
        traced = time.perf_counter()

        # Lifelong normalisation: this turn's features join the carried statistics first.
        groups = {p: norm.group_name(k.shape[1], g.shape[1]) for p, (k, g) in features.items()}
        turn: dict[str, torch.Tensor] = {}
        for path, (k, g) in features.items():
            turn = norm.add(turn, norm.contribution(torch.cat([k, g], -1), groups[path]))
        carried = {name: t for name, t in context.carried.items() if name.startswith("ultraedit/")}
        state = norm.add(carried, turn)

        updates = {}
        for path, (k, g) in features.items():
            mean, std = norm.mean_std(state, groups[path])
            values = norm.pseudo_values(k, g, mean, std, hp.lr)
            updates[f"{path}.weight"] = shift_update(k, values, hp.ridge, family.mlp_out_transposed)
        delta = Delta(updates=updates, meta={"method": "ultraedit", "layers": ",".join(map(str, hp.layers or ()))})
        info = {"layers": list(hp.layers or ()), "modules": list(hp.modules), "sequences": len(sequences),
                "cached_tokens": int(next(iter(features.values()))[0].shape[0]),
                "trace_seconds": round(traced - started, 3),
                "solve_seconds": round(time.perf_counter() - traced, 3)}
        return EditResult(delta=delta, info=info, fingerprint=context.fingerprint, carried=turn)


def shift_update(keys: torch.Tensor, values: torch.Tensor, ridge: float, transposed: bool) -> LowRank | Dense:
    """``ΔW = Vᵀ K (KᵀK + ridge I)⁻¹`` [d_out, d_in], kept as factors while N is small.

    By the push-through identity ``K (KᵀK + rI)⁻¹ = (KKᵀ + rI)⁻¹ K``, so with N cached
    tokens the shift is ``left rightᵀ`` with ``left = Vᵀ`` [d_out, N] and
    ``right = Kᵀ (KKᵀ + rI)⁻¹`` [d_in, N]: rank N, whichever form is smaller is stored.
    """
    k, v = keys.double(), values.double()
    n, d_in = k.shape
    if n < d_in:
        # right [d_in, N]
        right = torch.linalg.solve(k @ k.T + ridge * torch.eye(n, dtype=torch.float64, device=k.device), k).T
        return factored_update(v.T, right, transposed)
    dense = norm.solve_shift(k, v, ridge)  # [d_out, d_in]
    return Dense(value=(dense.T if transposed else dense).float().contiguous())

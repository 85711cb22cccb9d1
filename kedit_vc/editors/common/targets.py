"""Target vectors: what a module should output at the subject so the model says the new object.

ROME (at the MLP output of the edited layer) and MEMIT (at the residual output of the
last edited layer) both optimise an additive vector ``delta`` at the subject's last
token so that the new object becomes likely after the prompt in every context template,
while a KL term on "{subject} is a" keeps the subject's essence. We optimise all
requests of a batch jointly (each delta only sees its own prompts, and Adam is
per-coordinate, so this equals separate runs), run the blocks below the edit once, and
apply the LM head only at target positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.models.families import get_module
from kedit_vc.models.forward import LowerBlockReplay, final_hidden, logits_from_hidden
from kedit_vc.models.hooks import edit_output
from kedit_vc.models.prompting import encode_continuation, encode_text, pad_batch, pad_id

from .positions import fill, subject_last_index

KL_PROMPT = "{} is a"


@dataclass(frozen=True)
class TargetSettings:
    steps: int
    lr: float
    weight_decay: float
    kl_factor: float
    clamp_norm_factor: float
    early_stop_nll: float = 0.05


@dataclass
class _Batch:
    ids: torch.Tensor            # [s, t] all sequences (rewrite prompts + KL prompts)
    mask: torch.Tensor           # [s, t]
    owner: torch.Tensor          # [s] request index of each sequence
    lookup: torch.Tensor         # [s] subject-last position of each sequence
    target_rows: torch.Tensor    # [m] sequence of each scored target token
    target_cols: torch.Tensor    # [m] position predicting it
    target_ids: torch.Tensor     # [m] the token
    target_owner: torch.Tensor   # [m] sequence index (for per-prompt means)
    target_len: torch.Tensor     # [m] target length of its sequence
    n_rewrite: int               # sequences [0, n_rewrite) are rewrite prompts
    kl_rows: torch.Tensor        # [n_requests] sequence index of each request's KL prompt
    first_rows: torch.Tensor     # [n_requests] the bare-prompt sequence of each request


def _build_batch(tokenizer: Any, requests: Sequence[EditRequest], templates: Sequence[str]) -> _Batch:
    seqs: list[list[int]] = []
    owner, lookup = [], []
    t_rows, t_cols, t_ids, t_len = [], [], [], []
    first_rows = []
    for r_index, request in enumerate(requests):
        target = encode_continuation(tokenizer, " " + request.target_new)
        if not target:
            raise ValueError(f"empty target for edit {request.edit_id}")
        for t_index, template in enumerate(templates):
            prompt = fill(template, request.prompt)
            ids = encode_text(tokenizer, fill(prompt, request.subject))
            row = len(seqs)
            if t_index == 0:
                first_rows.append(row)
            for j, token in enumerate(target):
                t_rows.append(row)
                t_cols.append(len(ids) - 1 + j)
                t_ids.append(token)
                t_len.append(len(target))
            seqs.append(ids + target[:-1])
            owner.append(r_index)
            lookup.append(subject_last_index(tokenizer, prompt, request.subject))
    n_rewrite = len(seqs)
    kl_rows = []
    for r_index, request in enumerate(requests):
        kl_rows.append(len(seqs))
        seqs.append(encode_text(tokenizer, fill(KL_PROMPT, request.subject)))
        owner.append(r_index)
        lookup.append(subject_last_index(tokenizer, KL_PROMPT, request.subject))
    ids, mask = pad_batch(seqs, pad_id(tokenizer))
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return _Batch(ids, mask, as_long(owner), as_long(lookup), as_long(t_rows), as_long(t_cols),
                  as_long(t_ids), as_long(t_rows), torch.tensor(t_len, dtype=torch.float32),
                  n_rewrite, as_long(kl_rows), as_long(first_rows))


#: Requests optimised together. Joint and separate optimisation give the same vectors,
#: so chunking only bounds memory (~0.4 GiB of activations per SmolLM2 request) and lets
#: each chunk stop early on its own.
CHUNK_SIZE = 8


def optimise_targets(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
                     module_path: str, block_index: int, templates: Sequence[str],
                     settings: TargetSettings, progress: Callable[[int, float], None] | None = None,
                     chunk_size: int = CHUNK_SIZE) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Optimise one additive vector per request at ``module_path``'s output.

    Returns ``(target_init [n, d], delta [n, d], info)``: the module's original output at
    the subject's last token of the bare prompt, and the optimised shift. The target
    vector is ``target_init + delta``. Requests go in chunks of ``chunk_size``.
    """
    inits, deltas, info = [], [], {"steps": 0, "nll": []}
    for start in range(0, len(requests), chunk_size):
        chunk = requests[start:start + chunk_size]
        init, delta, chunk_info = _optimise_chunk(model, tokenizer, chunk, module_path, block_index,
                                                  templates, settings, progress)
        inits.append(init)
        deltas.append(delta)
        info["steps"] = max(info["steps"], chunk_info["steps"])
        info["nll"] += chunk_info.get("nll", [])
    return torch.cat(inits), torch.cat(deltas), info


def _optimise_chunk(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
                    module_path: str, block_index: int, templates: Sequence[str],
                    settings: TargetSettings, progress: Callable[[int, float], None] | None,
                    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    batch = _build_batch(tokenizer, requests, templates)
    module = get_module(model, module_path)
    n = len(requests)
    rows = torch.arange(batch.ids.shape[0])
    state: dict[str, Any] = {"delta": None}

    def add_delta(hidden: torch.Tensor) -> torch.Tensor:  # hidden [s, t, d]
        if state["delta"] is None:
            state["init"] = hidden[batch.first_rows, batch.lookup[batch.first_rows]].detach().clone()
            return hidden
        shift = torch.zeros_like(hidden)
        shift = shift.index_put((rows, batch.lookup), state["delta"][batch.owner])
        return hidden + shift

    def forward() -> tuple[torch.Tensor, torch.Tensor]:
        hidden = final_hidden(model, batch.ids, batch.mask)
        target_logits = logits_from_hidden(model, hidden[batch.target_rows, batch.target_cols])
        kl_logits = logits_from_hidden(model, hidden[batch.kl_rows, batch.lookup[batch.kl_rows]])
        return target_logits, kl_logits

    info: dict[str, Any] = {"steps": 0}
    with LowerBlockReplay(model, block_index) as replay, edit_output(module, add_delta):
        with torch.no_grad():
            _, kl_init = forward()
        replay.arm()
        kl_init = F.log_softmax(kl_init.float(), dim=-1)
        target_init = state["init"]  # [n, d]
        delta = torch.zeros_like(target_init, requires_grad=True)
        state["delta"] = delta
        optimiser = torch.optim.Adam([delta], lr=settings.lr)
        max_norm = settings.clamp_norm_factor * target_init.norm(dim=-1, keepdim=True)
        init_norm_sq = target_init.norm(dim=-1) ** 2
        for step in range(settings.steps):
            optimiser.zero_grad()
            target_logits, kl_logits = forward()
            log_probs = F.log_softmax(target_logits.float(), dim=-1)
            token_nll = -log_probs.gather(-1, batch.target_ids[:, None])[:, 0] / batch.target_len
            per_seq = torch.zeros(batch.n_rewrite).index_add(0, batch.target_owner, token_nll)
            per_request = torch.zeros(n).index_add(0, batch.owner[: batch.n_rewrite], per_seq)
            per_request = per_request / len(templates)
            kl = F.kl_div(F.log_softmax(kl_logits.float(), dim=-1), kl_init, log_target=True,
                          reduction="none").sum(-1)  # [n]
            decay = settings.weight_decay * delta.norm(dim=-1) / init_norm_sq
            loss = (per_request + settings.kl_factor * kl + decay).sum()
            info["steps"] = step + 1
            info["nll"] = per_request.detach().tolist()
            if progress is not None:
                progress(step, float(per_request.detach().mean()))
            if float(per_request.detach().max()) < settings.early_stop_nll:
                break
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                norms = delta.norm(dim=-1, keepdim=True)
                delta.mul_(torch.where(norms > max_norm, max_norm / norms, torch.ones_like(norms)))
    return target_init, delta.detach(), info

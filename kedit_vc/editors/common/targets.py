"""Target vectors: what a module should output at the subject so the model says the new object.

ROME (at the MLP output of the edited layer) and MEMIT (at the residual output of the
last edited layer) both optimise an additive vector ``delta`` at the subject's last
token so that the new object becomes likely after the prompt in every context template,
while a KL term on "{subject} is a" keeps the subject's essence. We optimise all
requests of a batch jointly (each delta only sees its own prompts, Adam is
per-coordinate, and a request that reaches the early-stop NLL is frozen and leaves the
batch, so this equals separate runs), run the blocks below the edit once, and apply the
LM head only at target positions.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.models.families import get_module
from kedit_vc.models.forward import (
    LowerBlockReplay,
    final_hidden,
    logits_from_hidden,
    prefix_states,
    suffix_hidden,
)
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
    #: Run the tokens before each subject's last token once (their states do not depend on
    #: the vector) and only the rest at every step; False: whole prompts every step.
    prefix_cache: bool = True


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
    prefix: torch.Tensor | None = None     # [s, L] left-padded tokens before lookup (prefix-cached form)
    positions: torch.Tensor | None = None  # [s, L + S] position ids (prefix-cached form; mask is [s, L + S])


def _build_batch(tokenizer: Any, units: Sequence[Sequence[EditRequest]], templates: Sequence[str]) -> _Batch:
    """Sequences of every unit's requests in every template; one KL prompt per unit."""
    seqs: list[list[int]] = []
    owner, lookup = [], []
    t_rows, t_cols, t_ids, t_len = [], [], [], []
    first_rows = []
    for r_index, unit in enumerate(units):
        for u_index, request in enumerate(unit):
            target = encode_continuation(tokenizer, " " + request.target_new)
            if not target:
                raise ValueError(f"empty target for edit {request.edit_id}")
            for t_index, template in enumerate(templates):
                prompt = fill(template, request.prompt)
                ids = encode_text(tokenizer, fill(prompt, request.subject))
                row = len(seqs)
                if t_index == 0 and u_index == 0:
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
    for r_index, unit in enumerate(units):
        kl_rows.append(len(seqs))
        seqs.append(encode_text(tokenizer, fill(KL_PROMPT, unit[0].subject)))
        owner.append(r_index)
        lookup.append(subject_last_index(tokenizer, KL_PROMPT, unit[0].subject))
    padded, mask = pad_batch(seqs, pad_id(tokenizer))

    def as_long(xs: list[int]) -> torch.Tensor:
        return torch.tensor(xs, dtype=torch.long)

    return _Batch(padded, mask, as_long(owner), as_long(lookup), as_long(t_rows), as_long(t_cols),
                  as_long(t_ids), as_long(t_rows), torch.tensor(t_len, dtype=torch.float32),
                  n_rewrite, as_long(kl_rows), as_long(first_rows))


def _split_at_subject(batch: _Batch, geometry: tuple[int, int] | None = None) -> _Batch:
    """``batch`` cut at each sequence's subject-last token: the tokens before it, left-padded
    to a common width ``L`` (``prefix``), and the rest from it on, right-padded to ``S``
    (``ids``), so every lookup sits at column 0 of ``ids``. ``geometry`` fixes ``(L, S)``
    (a subset of a batch keeps the full batch's). The mask and positions cover ``L + S``.
    """
    lengths = batch.mask.sum(-1)
    if geometry is None:
        geometry = (int(batch.lookup.max()), int((lengths - batch.lookup).max()))
    width_l, width_s = geometry
    rows = batch.ids.shape[0]
    ids = torch.zeros((rows, width_l + width_s), dtype=torch.long)  # padding is masked, never read
    mask = torch.zeros((rows, width_l + width_s), dtype=torch.long)
    for row in range(rows):
        k, n = int(batch.lookup[row]), int(lengths[row])
        ids[row, width_l - k:width_l - k + n] = batch.ids[row, :n]
        mask[row, width_l - k:width_l - k + n] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return _Batch(ids[:, width_l:], mask, batch.owner, torch.zeros_like(batch.lookup), batch.target_rows,
                  batch.target_cols - batch.lookup[batch.target_rows], batch.target_ids, batch.target_owner,
                  batch.target_len, batch.n_rewrite, batch.kl_rows, batch.first_rows,
                  prefix=ids[:, :width_l], positions=positions)


def by_subject(requests: Sequence[EditRequest]) -> list[list[EditRequest]]:
    """Requests grouped by subject, in order of first appearance (each group is one unit
    of ``optimise_unit_targets``: one key, one vector)."""
    groups: dict[str, list[EditRequest]] = {}
    for request in requests:
        groups.setdefault(request.subject, []).append(request)
    return list(groups.values())


#: Requests optimised together. Joint and separate optimisation give the same vectors
#: (each request also stops early on its own), so chunking only bounds memory (~0.4 GiB
#: of activations per SmolLM2 request).
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
    return optimise_unit_targets(model, tokenizer, [[r] for r in requests], module_path, block_index, templates,
                                 settings, progress, chunk_size)


def optimise_unit_targets(model: torch.nn.Module, tokenizer: Any, units: Sequence[Sequence[EditRequest]],
                          module_path: str, block_index: int, templates: Sequence[str],
                          settings: TargetSettings, progress: Callable[[int, float], None] | None = None,
                          chunk_size: int = CHUNK_SIZE) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """One vector per unit: a unit's requests share a subject, so they share the key and
    one vector must make every one of their prompts say its object (its loss is the mean
    over the unit's prompts). Separate vectors for one key would overwrite each other:
    an edit's derived facts about the same subject erased the edit itself.

    Returns ``(target_init [u, d], delta [u, d], info)``; the init is the output at the
    subject's last token of the unit's first bare prompt.
    """
    init, delta, info = optimise_joint_targets(model, tokenizer, units, [module_path], block_index, templates,
                                               settings, progress, chunk_size)
    return init[:, 0], delta[:, 0], info


def optimise_joint_targets(model: torch.nn.Module, tokenizer: Any, units: Sequence[Sequence[EditRequest]],
                           module_paths: Sequence[str], block_index: int, templates: Sequence[str],
                           settings: TargetSettings, progress: Callable[[int, float], None] | None = None,
                           chunk_size: int = CHUNK_SIZE) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """One vector per unit at each of ``module_paths``, optimised jointly (PMET optimises the
    attention and the MLP output of one block together).

    Every module must run at or after block ``block_index`` (blocks below it are replayed
    from a cache). Each module's vector is clamped against its own original output and
    pays its own weight decay. Returns ``(target_init [u, m, d], delta [u, m, d], info)``
    for ``m = len(module_paths)``.
    """
    inits, deltas = [], []
    info: dict[str, Any] = {"steps": 0, "nll": [], "request_steps": [], "forward_seconds": 0.0,
                            "backward_seconds": 0.0, "tokens": 0}
    for start in range(0, len(units), chunk_size):
        chunk = units[start:start + chunk_size]
        init, delta, chunk_info = _optimise_chunk(model, tokenizer, chunk, module_paths, block_index,
                                                  templates, settings, progress)
        inits.append(init)
        deltas.append(delta)
        info["steps"] = max(info["steps"], chunk_info["steps"])
        info["nll"] += chunk_info["nll"]
        info["request_steps"] += chunk_info["request_steps"]
        for key in ("forward_seconds", "backward_seconds", "tokens"):
            info[key] += chunk_info[key]
    return torch.cat(inits), torch.cat(deltas), info


def _optimise_chunk(model: torch.nn.Module, tokenizer: Any, requests: Sequence[Sequence[EditRequest]],
                    module_paths: Sequence[str], block_index: int, templates: Sequence[str],
                    settings: TargetSettings, progress: Callable[[int, float], None] | None,
                    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Optimise the chunk's vectors (one per unit of ``requests``); each unit stops on its
    own, as if run alone.

    A request whose NLL falls below ``early_stop_nll`` keeps the vector that reached it
    and its sequences leave the batch, so later steps cost only what is still learning.
    """
    full = _build_batch(tokenizer, requests, templates)
    if settings.prefix_cache:
        split = _split_at_subject(full)
        # A sliding window counts the left padding as positions: only when it covers every row.
        window = getattr(getattr(model, "config", None), "sliding_window", None)
        if not window or split.mask.shape[1] <= int(window):
            full = split
    n = len(requests)
    state: dict[str, Any] = {"batch": full, "shift": None, "kv": None, "init": {}}
    if full.prefix is not None and full.positions is not None:
        width_l = full.prefix.shape[1]
        state["kv"] = prefix_states(model, full.prefix, full.mask[:, :width_l], full.positions[:, :width_l])
        full_kv = state["kv"]

    def add_delta(slot: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def add(hidden: torch.Tensor) -> torch.Tensor:  # hidden [s, t, d]
            batch = state["batch"]
            if state["shift"] is None:
                state["init"][slot] = hidden[batch.first_rows, batch.lookup[batch.first_rows]].detach().clone()
                return hidden
            rows = torch.arange(batch.ids.shape[0])
            # The vectors are float32 (Adam's eps underflows in half precision); the shift is cast to
            # the model's dtype, gradients flow back through the cast.
            shift = torch.zeros_like(hidden).index_put(
                (rows.to(hidden.device), batch.lookup.to(hidden.device)),
                state["shift"][batch.owner, slot].to(hidden.device, hidden.dtype))
            return hidden + shift
        return add

    def forward() -> tuple[torch.Tensor, torch.Tensor]:
        batch = state["batch"]
        if batch.positions is None:
            hidden = final_hidden(model, batch.ids, batch.mask)
        else:
            hidden = suffix_hidden(model, batch.ids, batch.mask, batch.positions[:, -batch.ids.shape[1]:],
                                   state["kv"])
        target_logits = logits_from_hidden(model, hidden[batch.target_rows, batch.target_cols])
        kl_logits = logits_from_hidden(model, hidden[batch.kl_rows, batch.lookup[batch.kl_rows]])
        return target_logits, kl_logits

    info: dict[str, Any] = {"steps": 0, "nll": [0.0] * n, "request_steps": [settings.steps] * n,
                            "forward_seconds": 0.0, "backward_seconds": 0.0, "tokens": 0}
    sizes = torch.tensor([len(unit) for unit in requests], dtype=torch.float32)  # [n] prompts per unit
    with LowerBlockReplay(model, block_index) as replay, ExitStack() as hooks:
        for slot, path in enumerate(module_paths):
            hooks.enter_context(edit_output(get_module(model, path), add_delta(slot)))
        with torch.no_grad():
            _, kl_init = forward()
        replay.arm()
        kl_init = F.log_softmax(kl_init.float(), dim=-1)   # [n, vocab]
        target_init = torch.stack([state["init"][slot] for slot in range(len(module_paths))],
                                  dim=1).float()  # [n, m, d], float32 even for a half-precision model
        delta = torch.zeros_like(target_init, requires_grad=True)
        optimiser = torch.optim.Adam([delta], lr=settings.lr)
        max_norm = settings.clamp_norm_factor * target_init.norm(dim=-1, keepdim=True)  # [n, m, 1]
        init_norm_sq = target_init.norm(dim=-1) ** 2  # [n, m]
        active = torch.arange(n)          # requests still optimising, ascending
        finished: dict[int, torch.Tensor] = {}
        for step in range(settings.steps):
            batch = state["batch"]
            optimiser.zero_grad()
            state["shift"] = delta[active]
            began = time.perf_counter()
            info["tokens"] += int(batch.ids.numel())
            target_logits, kl_logits = forward()
            log_probs = F.log_softmax(target_logits.float(), dim=-1)
            token_nll = -log_probs.gather(-1, batch.target_ids[:, None])[:, 0] / batch.target_len
            on = token_nll.device
            per_seq = torch.zeros(batch.n_rewrite, device=on).index_add(0, batch.target_owner.to(on), token_nll)
            per_request = torch.zeros(len(active), device=on).index_add(
                0, batch.owner[: batch.n_rewrite].to(on), per_seq)
            per_request = per_request / (len(templates) * sizes[active]).to(on)
            kl = F.kl_div(F.log_softmax(kl_logits.float(), dim=-1), kl_init[active], log_target=True,
                          reduction="none").sum(-1)  # [active]
            decay = settings.weight_decay * (delta[active].norm(dim=-1) / init_norm_sq[active]).sum(-1)
            info["steps"] = step + 1
            info["forward_seconds"] += time.perf_counter() - began
            nll = per_request.detach()
            for position, request in enumerate(active.tolist()):
                info["nll"][request] = float(nll[position])
            if progress is not None:
                progress(step, float(nll.mean()))
            done = nll < settings.early_stop_nll
            for position in torch.nonzero(done).flatten().tolist():
                request = int(active[position])
                finished[request] = delta[request].detach().clone()
                info["request_steps"][request] = step
            if bool(done.all()):
                break
            loss = (per_request + settings.kl_factor * kl + decay)[~done].sum()
            began = time.perf_counter()
            loss.backward()
            info["backward_seconds"] += time.perf_counter() - began
            optimiser.step()
            with torch.no_grad():
                norms = delta.norm(dim=-1, keepdim=True)
                delta.mul_(torch.where(norms > max_norm, max_norm / norms, torch.ones_like(norms)))
                for request, value in finished.items():  # Adam's momentum must not move them
                    delta[request] = value
            if bool(done.any()):
                active = active[~done]
                subset = _build_batch(tokenizer, [requests[i] for i in active.tolist()], templates)
                keep = torch.nonzero(torch.isin(full.owner, active)).flatten()
                if full.prefix is not None:
                    subset = _split_at_subject(subset, (full.prefix.shape[1], full.ids.shape[1]))
                    state["kv"] = [(keys[keep], values[keep]) for keys, values in full_kv]
                state["batch"] = subset
                replay.select(keep, subset.ids.shape[1])
    return target_init, delta.detach(), info

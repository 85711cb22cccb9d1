"""The live side memory of a module and the router that uses it.

Across commits (oldest first) the live difference ``D = W_side − W_main`` [d_out, d_in] is the
sum of the live patches' increments, in commit order; the threshold is ``act_ratio`` (the
newest patch's) times the least recorded activation of the live edits. So the memory at a
revision depends only on which patches are live, in commit order.

Routing (``routed_output``, per sequence, as WISE does): the activation of a sequence is the
mean over its tokens of ``‖a_t·Dᵀ‖`` (``a_t`` [d_in]: the module's input at token ``t``; padding
excluded through the attention mask the model was called with). A sequence whose activation
reaches the threshold gets the side memory's output ``a·W_sideᵀ = a·W_mainᵀ + a·Dᵀ`` at every
token; any other sequence keeps the module's own output, the very same tensor. During
``generate`` with a KV cache each step sees only its new token: the router keeps a running
sum of the token norms per sequence, so a step's decision is the mean over the whole
sequence so far (the reference decides each cached step on its one new token alone, which
flips single tokens of unrelated generations onto the side memory and edited ones off it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from .core import SideMemoryPatch


@dataclass(frozen=True)
class LiveMemory:
    """The side memory in effect at one module: ``delta`` [d_out, d_in], ``mask`` bool
    [d_out, d_in] (the newest patch's gradient mask), ``activations`` [N] of the ``edit_ids``."""

    module: str
    delta: torch.Tensor
    mask: torch.Tensor
    activations: torch.Tensor
    edit_ids: tuple[str, ...]
    act_ratio: float

    @property
    def threshold(self) -> float:
        return self.act_ratio * float(self.activations.min()) if self.activations.numel() else float("inf")


def live_memory(patches: Iterable[SideMemoryPatch], module: str | None = None) -> dict[str, LiveMemory]:
    """module -> its live side memory, from the live patches oldest first (``module``: only that one)."""
    grouped: dict[str, list[SideMemoryPatch]] = {}
    for patch in patches:
        if module is None or patch.module == module:
            grouped.setdefault(patch.module, []).append(patch)
    out = {}
    for name, group in grouped.items():
        delta = torch.zeros(group[0].out_dim, group[0].in_dim)
        for patch in group:
            delta = delta + patch.increment()
        out[name] = LiveMemory(name, delta, group[-1].bool_mask(), torch.cat([p.activations for p in group]),
                               tuple(i for p in group for i in p.edit_ids), group[-1].act_ratio)
    return out


def norm_sums(inputs: torch.Tensor, delta: torch.Tensor, token_mask: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(side part ``a·Dᵀ`` [b, t, d_out] float32, sum of ``‖a_t·Dᵀ‖`` over the counted tokens
    [b], tokens counted [b]) of ``inputs`` [b, t, d_in] (or [t, d_in], read as one sequence);
    ``token_mask`` [b, t]: which tokens count (None: all)."""
    batch = inputs if inputs.dim() == 3 else inputs.reshape(1, -1, inputs.shape[-1])
    side = batch.float() @ delta.to(batch.device).T                # [b, t, d_out]
    norms = side.norm(dim=-1)                                      # [b, t]
    weight = torch.ones_like(norms) if token_mask is None else token_mask.to(norms.device, norms.dtype)
    return side, (norms * weight).sum(dim=1), weight.sum(dim=1)


def activation(inputs: torch.Tensor, delta: torch.Tensor, token_mask: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(side part [b, t, d_out], activation per sequence [b]: the mean token norm)."""
    side, total, count = norm_sums(inputs, delta, token_mask)
    return side, total / count.clamp(min=1.0)


def routed_output(inputs: torch.Tensor, output: torch.Tensor, delta: torch.Tensor, threshold: float,
                  token_mask: torch.Tensor | None = None, running: dict[str, torch.Tensor] | None = None
                  ) -> torch.Tensor:
    """The module's ``output`` [..., d_out] with the side memory's part added to every
    sequence whose activation reaches ``threshold``; the very same tensor when none does.
    ``running``: sums carried over from earlier cached steps of the same sequences
    (``total``, ``count`` [b], updated in place; empty: this call starts them)."""
    side, total, count = norm_sums(inputs, delta, token_mask)
    if running is not None:
        if "total" in running and running["total"].shape == total.shape:
            total, count = running["total"] + total, running["count"] + count
        running["total"], running["count"] = total, count
    routed = total / count.clamp(min=1.0) >= threshold             # [b]
    if not bool(routed.any()):
        return output
    batch = output.reshape(side.shape)
    out = torch.where(routed[:, None, None], batch + side.to(batch.dtype), batch)
    return out.reshape(output.shape)


def _token_mask(state: dict[str, Any], inputs: torch.Tensor) -> torch.Tensor | None:
    """The last ``t`` columns of the attention mask the model was called with, if it fits."""
    mask = state.get("attention_mask")
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or inputs.dim() != 3:
        return None
    b, t = inputs.shape[:2]
    return mask[:, -t:] if mask.shape[0] == b and mask.shape[1] >= t else None


def _continues(cache: Any) -> bool:
    """Whether a call extends cached sequences (a KV cache already holding tokens)."""
    length = getattr(cache, "get_seq_length", None)
    try:
        return bool(callable(length) and int(length()) > 0)
    except Exception:  # noqa: BLE001 - a cache type without a length: treat the call as new
        return False


def attach(model: torch.nn.Module, patches: Sequence[SideMemoryPatch]) -> list[Any]:
    """Hooks routing through the live side memory of ``patches`` (oldest first) at their
    modules, and one on the model recording the attention mask of each call; returns the
    handles (``handle.remove()`` detaches). Each patch is checked against the model first."""
    for patch in patches:
        patch.check_model(model)
    memories = live_memory(patches)
    if not memories:
        return []
    state: dict[str, Any] = {}

    def remember(_model: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        mask = kwargs.get("attention_mask")
        if mask is None and len(args) > 1 and isinstance(args[1], torch.Tensor):
            mask = args[1]
        state["attention_mask"] = mask
        cache = kwargs.get("past_key_values", kwargs.get("cache"))  # transformers 4 / 5 names
        if not _continues(cache):  # a new sequence: its running sums start afresh
            state["running"] = {}

    def forget(_model: torch.nn.Module, _args: tuple, _kwargs: dict, _output: Any) -> None:
        state.pop("attention_mask", None)

    handles = [model.register_forward_pre_hook(remember, with_kwargs=True),
               model.register_forward_hook(forget, with_kwargs=True)]
    for name, memory in memories.items():
        module = model.get_submodule(name)
        weight = getattr(module, "weight", None)
        device = weight.device if isinstance(weight, torch.Tensor) else torch.device("cpu")
        delta = memory.delta.to(device)  # moved once

        def hook(_module: torch.nn.Module, args: tuple, output: Any, _d: torch.Tensor = delta,
                 _eps: float = memory.threshold, _name: str = name) -> Any:
            running = state.setdefault("running", {}).setdefault(_name, {})
            return routed_output(args[0], output, _d, _eps, _token_mask(state, args[0]), running)

        handles.append(module.register_forward_hook(hook))
    return handles

"""The live side memory of a module and the router that uses it.

Across commits (oldest first), each knowledge shard's difference ``D_s = W_side^s − W_main``
[d_out, d_in] is the sum of its live patches' increments, in commit order. The side memory is
the shards merged as WISE-Merge merges them: the shards of the first merge group TIES-merged
with equal weights; each later group's shards TIES-merged together with the memory merged so
far (weight ``memory_weight``, the group's shards sharing the rest), group by group. The last
group is merged too even when its shards are not yet full: that is the reference's merge
before use (EasyEdit's WISE merges the pending shards when the edited model is called), and
the next edit trains its own shard, never the merged memory, so nothing is counted twice.
A memory of one shard is that shard's ``D`` itself (its merge with itself changes nothing but
a trim that the gradient mask already satisfies when ``mask_ratio <= density``; we skip it).
The threshold is ``act_ratio`` (the newest patch's) times the least recorded activation of the
live edits (every shard's, as WISE-Merge's router does). So the memory at a revision depends
only on which patches are live, in commit order, and reverting a commit is exact.

Routing (``routed_output``, per sequence, as WISE does): the activation of a sequence is the
mean over its tokens of ``‖a_t·Dᵀ‖`` (``a_t`` [d_in]: the module's input at token ``t``; padding
excluded through the attention mask the model was called with). A sequence whose activation
reaches the threshold gets the side memory's output ``a·W_sideᵀ = a·W_mainᵀ + a·Dᵀ`` at every
token; any other sequence keeps the module's own output, the very same tensor. During
``generate`` with a KV cache each step sees only its new token: the router keeps a running
sum of the token norms per sequence, so a step's decision is the mean over the whole
sequence so far (the reference decides each cached step on its one new token alone, which
flips single tokens of unrelated generations onto the side memory and edited ones off it).

WISE-Retrieve (the newest patch's ``retrieve``; §2.3.2, EasyEdit's ``retrieve=True``): the
merge groups are not merged into each other. A complete group (``shards_per_merge`` shards,
the last one full) is one memory, its shards TIES-merged with equal weights; the shards of
the group still filling are a memory each. Each memory has its own threshold, ``act_ratio``
times the least activation of its own edits, and a sequence goes to the memory it activates
most among those whose threshold it reaches (none: the module's own output). The reference
also asks that memory to out-activate the shard in training even when that shard is below its
threshold; here only the memories' own thresholds count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from .core import SideMemoryPatch
from .merge import ties_merge


@dataclass(frozen=True)
class Shard:
    """One live knowledge shard: ``delta`` [d_out, d_in] (the sum of its patches' increments),
    its gradient ``mask`` bool [d_out, d_in] and how many edits it holds."""

    index: int
    group: int
    delta: torch.Tensor
    mask: torch.Tensor
    edits: int
    least: float = float("inf")   # the least recorded activation of its edits


@dataclass(frozen=True)
class Memory:
    """One memory the router can send a sequence to: ``delta`` [d_out, d_in], the activation
    ``threshold`` a sequence must reach, and the ``shards`` (numbers) it was made of."""

    delta: torch.Tensor
    threshold: float
    shards: tuple[int, ...]


@dataclass(frozen=True)
class LiveMemory:
    """The side memory in effect at one module: its ``memories`` (WISE-Merge: one, the shards
    merged; WISE-Retrieve: one per merge group), ``shards`` (oldest first), ``activations`` [N]
    of the ``edit_ids`` (commit order), and ``merges`` (how many TIES merges made them)."""

    module: str
    memories: tuple[Memory, ...]
    shards: tuple[Shard, ...]
    activations: torch.Tensor
    edit_ids: tuple[str, ...]
    act_ratio: float
    merges: int = 0
    retrieve: bool = False

    @property
    def delta(self) -> torch.Tensor:
        """The one memory's ``D`` [d_out, d_in] (WISE-Merge, or a retrieve memory of one)."""
        if len(self.memories) != 1:
            raise ValueError(f"{self.module} holds {len(self.memories)} retrieve memories: read .memories")
        return self.memories[0].delta

    @property
    def threshold(self) -> float:
        """The least threshold of the memories (WISE-Merge: act_ratio x the least activation)."""
        return min((m.threshold for m in self.memories), default=float("inf"))

    @property
    def mask(self) -> torch.Tensor:
        """The newest shard's gradient mask, bool [d_out, d_in]."""
        return self.shards[-1].mask


def merged(shards: Sequence[Shard], density: float, memory_weight: float) -> tuple[torch.Tensor, int]:
    """(the side memory ``D`` of ``shards`` by the WISE-Merge schedule, merges made); see the module doc."""
    if len(shards) == 1:
        return shards[0].delta.clone(), 0
    groups: dict[int, list[Shard]] = {}
    for shard in shards:
        groups.setdefault(shard.group, []).append(shard)
    memory: torch.Tensor | None = None
    for group in (groups[g] for g in sorted(groups)):
        deltas = [s.delta for s in group]
        if memory is None:
            memory = ties_merge(deltas, [1.0 / len(deltas)] * len(deltas), density)
        else:
            share = (1.0 - memory_weight) / len(deltas)
            memory = ties_merge(deltas + [memory], [share] * len(deltas) + [memory_weight], density)
    assert memory is not None
    return memory, len(groups)


def live_memory(patches: Iterable[SideMemoryPatch], module: str | None = None) -> dict[str, LiveMemory]:
    """module -> its live side memory, from the live patches oldest first (``module``: only that one)."""
    grouped: dict[str, list[SideMemoryPatch]] = {}
    for patch in patches:
        if module is None or patch.module == module:
            grouped.setdefault(patch.module, []).append(patch)
    out = {}
    for name, group in grouped.items():
        by_shard: dict[int, list[SideMemoryPatch]] = {}
        for patch in group:
            by_shard.setdefault(patch.shard, []).append(patch)
        shards = []
        for index in sorted(by_shard):
            members = by_shard[index]
            delta = torch.zeros(members[0].out_dim, members[0].in_dim)
            for patch in members:
                delta = delta + patch.increment()
            acts = torch.cat([p.activations for p in members])
            shards.append(Shard(index, members[-1].group, delta, members[-1].bool_mask(),
                                sum(len(p.edit_ids) for p in members),
                                float(acts.min()) if acts.numel() else float("inf")))
        newest = group[-1]
        activations = torch.cat([p.activations for p in group])
        if newest.retrieve:
            memories, merges = retrieved(shards, newest.act_ratio, newest.density, newest.shard_size,
                                         newest.shards_per_merge)
        else:
            delta, merges = merged(shards, newest.density, newest.memory_weight)
            least = float(activations.min()) if activations.numel() else float("inf")
            memories = (Memory(delta, newest.act_ratio * least, tuple(s.index for s in shards)),)
        out[name] = LiveMemory(name, memories, tuple(shards), activations,
                               tuple(i for p in group for i in p.edit_ids), newest.act_ratio, merges,
                               newest.retrieve)
    return out


def retrieved(shards: Sequence[Shard], act_ratio: float, density: float, shard_size: int,
              shards_per_merge: int) -> tuple[tuple[Memory, ...], int]:
    """(WISE-Retrieve's memories of ``shards``, merges made): a complete merge group (every
    group but the newest; the newest once it has ``shards_per_merge`` shards and the last holds
    ``shard_size`` edits) is one memory, its shards TIES-merged with equal weights; each shard of
    the newest group still filling is a memory of its own. Thresholds: ``act_ratio`` x the least
    activation of the memory's edits."""
    groups: dict[int, list[Shard]] = {}
    for shard in shards:
        groups.setdefault(shard.group, []).append(shard)
    newest = max(groups, default=0)
    memories: list[Memory] = []
    merges = 0
    for number in sorted(groups):
        members = groups[number]
        complete = number != newest or (len(members) >= shards_per_merge and members[-1].edits >= shard_size)
        if complete and len(members) > 1:
            delta = ties_merge([s.delta for s in members], [1.0 / len(members)] * len(members), density)
            merges += 1
            memories.append(Memory(delta, act_ratio * min(s.least for s in members),
                                   tuple(s.index for s in members)))
        else:
            memories.extend(Memory(s.delta.clone(), act_ratio * s.least, (s.index,)) for s in members)
    return tuple(memories), merges


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
    (``total``, ``count``, updated in place; empty: this call starts them)."""
    return route(inputs, output, [(delta, threshold)], token_mask, running)


def pick(scores: torch.Tensor, thresholds: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """The router's choice from ``scores`` [k, b] (each sequence's activation on each of ``k``
    memories): (bool [b]: reaches some memory's threshold, long [b]: the most activated memory
    among those it reaches; meaningless where it reaches none)."""
    floors = torch.tensor(list(thresholds), dtype=scores.dtype, device=scores.device)[:, None]
    reach = scores >= floors
    best = torch.where(reach, scores, torch.full_like(scores, float("-inf"))).argmax(dim=0)
    return reach.any(dim=0), best


def route(inputs: torch.Tensor, output: torch.Tensor, memories: Sequence[tuple[torch.Tensor, float]],
          token_mask: torch.Tensor | None = None, running: dict[str, torch.Tensor] | None = None
          ) -> torch.Tensor:
    """``output`` [..., d_out] with, per sequence, the part of the memory (``memories``: each
    ``D`` [d_out, d_in] and its threshold) it activates most among those whose threshold it
    reaches; the very same tensor when it reaches none. ``running`` as in ``routed_output``
    (``total`` [k, b], ``count`` [b])."""
    parts = [norm_sums(inputs, delta, token_mask) for delta, _ in memories]
    total, count = torch.stack([t for _, t, _ in parts]), parts[0][2]         # [k, b], [b]
    if running is not None:
        if "total" in running and running["total"].shape == total.shape:
            total, count = running["total"] + total, running["count"] + count
        running["total"], running["count"] = total, count
    routed, best = pick(total / count.clamp(min=1.0), [t for _, t in memories])   # [b], [b]
    if not bool(routed.any()):
        return output
    rows = torch.arange(len(best), device=best.device)
    sides = parts[0][0] if len(parts) == 1 else torch.stack([p[0] for p in parts])[best, rows]   # [b, t, d_out]
    batch = output.reshape(sides.shape)
    out = torch.where(routed[:, None, None], batch + sides.to(batch.dtype), batch)
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


def _entry(model: torch.nn.Module) -> torch.nn.Module:
    """The module every forward passes through with its attention mask and cache: the decoder
    stack (``model.model`` for Llama), which evaluation and the editors call directly
    (``models.forward.final_hidden``) as well as through the model; the model itself where its
    family is unknown."""
    from kedit_vc.errors import KvcError
    from kedit_vc.models.families import decoder_stack
    from kedit_vc.models.forward import unwrap

    inner = unwrap(model)
    try:
        return decoder_stack(inner)
    except (KvcError, AttributeError):
        return model


def attach(model: torch.nn.Module, patches: Sequence[SideMemoryPatch]) -> list[Any]:
    """Hooks routing through the live side memory of ``patches`` (oldest first) at their
    modules, and one on the decoder stack recording the attention mask of each call and
    starting each new sequence's running sums (on the stack, not the model: a call of the
    stack alone, as batched scoring makes, must not count padding nor inherit the sums of the
    previous call); returns the handles (``handle.remove()`` detaches). Each patch is checked
    against the model first."""
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

    entry = _entry(model)
    handles = [entry.register_forward_pre_hook(remember, with_kwargs=True),
               entry.register_forward_hook(forget, with_kwargs=True)]
    for name, memory in memories.items():
        module = model.get_submodule(name)
        weight = getattr(module, "weight", None)
        device = weight.device if isinstance(weight, torch.Tensor) else torch.device("cpu")
        moved = [(m.delta.to(device), m.threshold) for m in memory.memories]  # moved once

        def hook(_module: torch.nn.Module, args: tuple, output: Any, _m: list = moved, _name: str = name) -> Any:
            running = state.setdefault("running", {}).setdefault(_name, {})
            return route(args[0], output, _m, _token_mask(state, args[0]), running)

        handles.append(module.register_forward_hook(hook))
    return handles

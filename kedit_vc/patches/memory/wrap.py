"""Putting the live edit memory in front of a model's inputs, with outputs aligned to them.

A MeLLo memory (policy ``mello``) is not put in front of inputs: ``attach`` gives it to
``mello.MelloHandle``, which installs ``model.answer`` and leaves forward and generate alone.

Attaching a memory replaces two methods on the model instance (``remove()`` puts them back):

* the decoder's ``forward`` (the family's ``base`` module, which ``model(...)``, the LM head
  and kedit_vc's scorers all go through): for each row, the context each position asks for
  (``live.Retriever``) is inserted after the row's shared prefix token (``lead_ids``; at the
  start when there is none), the decoder runs on ``lead + context + the row's tokens`` (one
  run per distinct context, cut after the last position that uses it; the context's KV cache
  is made once and reused, so a query pays for its own tokens), and each position's output
  is read back at its own place. The returned hidden states [b, t, d] are aligned
  with the caller's ``input_ids`` [b, t], so ``model(ids).logits`` [b, t, V] is too; positions
  whose context is empty come from one ordinary call on the whole batch, unchanged, and a
  batch where no position asks for a context is that ordinary call. Padding (either side) is
  read from ``attention_mask``; padded positions are zeros (a padded position is never read).
* ``generate``: each row's context is chosen from its whole prompt and put in front, the rows
  are left-padded and generated as usual, and the returned sequences are the caller's
  ``input_ids`` followed by the new tokens, as without a memory. New tokens keep the
  prompt's context (re-choosing it per token would recompute the sequence each step).

A forward that asks for a KV cache (``use_cache=True``, as incremental decoding by hand does:
``models.forward.decode_step``) or brings one passes through without the memory: a cache
made over a context would hold the context's keys at the caller's positions. Generate with
``generate`` to decode with the memory. ``ops.commit`` detaches the memory while an editor
runs (``PatchKind.while_editing``), so a weight edit made after memory commits is the same
as without them. The context caches belong to one attachment: weights changed by hand while
a memory is attached need a re-attach (``SidePatches.set``), as every kedit_vc path does.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch

from kedit_vc.models.families import decoder_stack

from .core import MemoryPatch
from .embed import hidden_states
from .live import LiveMemory, Retriever, live_memory

#: Context KV caches kept per attached memory (a context is one fact's, so a few cover a batch).
PREFIXES = 8


def _cache_len(cache: Any) -> int:
    if cache is None:
        return 0
    length = getattr(cache, "get_seq_length", None)
    if callable(length):
        return int(length())
    return 1  # a legacy tuple cache: not empty


class MemoryWrapper:
    """The live memory attached to ``model`` (see the module doc); ``remove()`` detaches it."""

    def __init__(self, model: torch.nn.Module, memory: LiveMemory) -> None:
        self.model, self.memory = model, memory
        self.base = decoder_stack(model)
        self._saved_forward = self.base.__dict__.get("forward")
        self._saved_generate = model.__dict__.get("generate")
        self.inner_forward = self.base.forward
        self.inner_generate = getattr(model, "generate", None)
        self.lead = set(memory.lead_ids)
        self.retriever = Retriever(model, self.inner_forward, memory)
        self.generating = False
        # transformers 5 names the KV cache ``cache`` (``past_key_values`` is deprecated there)
        parameters = inspect.signature(type(self.base).forward).parameters
        self.cache_keyword = "cache" if "cache" in parameters else "past_key_values"
        self._prefixes: dict[tuple[tuple[int, ...], tuple[int, ...]], tuple[Any, int, torch.Tensor]] = {}
        self.base.forward = self._forward
        if self.inner_generate is not None:
            setattr(model, "generate", self._generate)  # noqa: B010 - an instance attribute, removed by remove()

    def remove(self) -> None:
        for owner, name, saved in ((self.base, "forward", self._saved_forward),
                                   (self.model, "generate", self._saved_generate)):
            if saved is None:
                owner.__dict__.pop(name, None)
            else:
                setattr(owner, name, saved)

    # -- choosing contexts -----------------------------------------------------------

    def _rows(self, input_ids: torch.Tensor, mask: torch.Tensor | None
              ) -> list[tuple[torch.Tensor, list[int], int, list[tuple[int, ...] | None]]]:
        """Per row: real positions [n], their token ids, the lead length and each position's context."""
        hidden = hidden_states(self.model, self.inner_forward, input_ids, mask, self.retriever.layer)
        out: list[tuple[torch.Tensor, list[int], int, list[tuple[int, ...] | None]]] = []
        for row in range(input_ids.shape[0]):
            real = (mask[row] > 0).nonzero()[:, 0] if mask is not None else torch.arange(input_ids.shape[1])
            real = real.to(input_ids.device)
            tokens = input_ids[row, real].tolist()
            lead = 1 if len(tokens) > 1 and tokens[0] in self.lead else 0
            if not tokens:
                out.append((real, tokens, lead, []))
                continue
            contexts = self.retriever.choose(self.retriever.scores(hidden[row, real]))
            for j in range(lead):
                contexts[j] = None  # before the context: never changed
            out.append((real, tokens, lead, contexts))
        return out

    # -- forward ---------------------------------------------------------------------

    def _forward(self, *args: Any, **kwargs: Any) -> Any:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if (self.generating or input_ids is None or kwargs.get("inputs_embeds") is not None
                or kwargs.get("use_cache") is True or _cache_len(kwargs.get("past_key_values"))
                or _cache_len(kwargs.get("cache")) or not self.memory.facts):
            return self.inner_forward(*args, **kwargs)
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() != 2:
            return self.inner_forward(*args, **kwargs)  # a 4-d mask is the caller's own business
        rows = self._rows(input_ids, mask)
        if all(c is None for _, _, _, contexts in rows for c in contexts):
            return self.inner_forward(*args, **kwargs)
        from transformers.modeling_outputs import BaseModelOutputWithPast

        plain = None
        if any(c is None for _, tokens, lead, contexts in rows for j, c in enumerate(contexts) if j >= lead):
            plain = self.inner_forward(*args, **{**kwargs, "use_cache": False}).last_hidden_state
        out: torch.Tensor | None = plain.clone() if plain is not None else None
        for row, (real, tokens, lead, contexts) in enumerate(rows):
            groups: dict[tuple[int, ...], list[int]] = {}
            for j, context in enumerate(contexts):
                if context is not None:
                    groups.setdefault(context, []).append(j)
            first = True
            for context, positions in groups.items():
                states = self._after(tokens[:lead], context, tokens[lead:max(positions) + 1], input_ids.device)
                if out is None:
                    out = states.new_zeros(input_ids.shape[0], input_ids.shape[1], states.shape[-1])
                taken = positions + (list(range(lead)) if first else [])
                where = torch.tensor(taken, device=states.device)
                out[row, real[torch.tensor(taken, device=real.device)]] = states[where].to(out.dtype)
                first = False
        assert out is not None
        return BaseModelOutputWithPast(last_hidden_state=out)

    def _after(self, lead: list[int], context: tuple[int, ...], tail: list[int], device: torch.device
               ) -> torch.Tensor:
        """Decoder states [len(lead) + len(tail), d] of ``lead`` then ``tail`` read with ``context``
        between them: the context's KV cache is made once (``PREFIXES`` kept, least recently used
        dropped) and cut back to its length after each use, so a query pays for its own tokens."""
        key = (tuple(lead), context)
        prefix = self._prefixes.pop(key, None)
        if prefix is None:
            ids = torch.tensor([list(lead) + list(context)], device=device)
            made = self.inner_forward(input_ids=ids, use_cache=True)
            made_cache = made.cache if self.cache_keyword == "cache" else made.past_key_values
            prefix = (made_cache, ids.shape[1], made.last_hidden_state[0, :len(lead)])
        self._prefixes[key] = prefix
        while len(self._prefixes) > PREFIXES:
            self._prefixes.pop(next(iter(self._prefixes)))
        cache, length, lead_states = prefix
        if not tail:
            return lead_states
        try:
            states = self.inner_forward(input_ids=torch.tensor([tail], device=device), use_cache=True,
                                        **{self.cache_keyword: cache}).last_hidden_state[0]
        finally:
            try:  # a negative crop removes that many tokens (what every transformers version accepts)
                cache.crop(length - _cache_len(cache))
                kept = _cache_len(cache) == length
            except (ValueError, RuntimeError):  # a cache layer that cannot roll back: make it again next time
                kept = False
            if not kept:
                self._prefixes.pop(key, None)
        return torch.cat([lead_states, states], dim=0)

    # -- generate --------------------------------------------------------------------

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        assert self.inner_generate is not None
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None or kwargs.get("inputs_embeds") is not None or not self.memory.facts:
            return self.inner_generate(*args, **kwargs)
        kwargs = dict(kwargs)
        if "input_ids" in kwargs:
            kwargs.pop("input_ids")
        else:
            args = args[1:]
        mask = kwargs.pop("attention_mask", None)
        rows = self._rows(input_ids, mask)
        combined = []
        for _, tokens, lead, contexts in rows:
            context = contexts[-1] if contexts else None
            combined.append(tokens[:lead] + list(context or ()) + tokens[lead:])
        if all((contexts[-1] if contexts else None) is None for _, _, _, contexts in rows):
            return self.inner_generate(*args, input_ids=input_ids, attention_mask=mask, **kwargs)
        pad = kwargs.get("pad_token_id")
        if pad is None:
            pad = getattr(getattr(self.model, "generation_config", None), "pad_token_id", None)
        ids, new_mask = _left_pad(combined, 0 if pad is None else int(pad), input_ids.device)
        self.generating = True
        try:
            result = self.inner_generate(*args, input_ids=ids, attention_mask=new_mask, **kwargs)
        finally:
            self.generating = False
        sequences = result if isinstance(result, torch.Tensor) else result.sequences
        joined = torch.cat([input_ids, sequences[:, ids.shape[1]:]], dim=1)
        if isinstance(result, torch.Tensor):
            return joined
        result.sequences = joined
        return result


def _left_pad(rows: Sequence[Sequence[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(list(r), device=device)
            mask[i, width - len(r):] = 1
    return ids, mask


def attach(model: torch.nn.Module, patches: Sequence[MemoryPatch]) -> list[Any]:
    """Wrap ``model`` with the live memory of ``patches`` (oldest first), each checked first;
    returns the handle whose ``remove()`` unwraps it (none when there are no facts)."""
    for patch in patches:
        patch.check_model(model)
    memory = live_memory(patches)
    if memory is None or not memory.facts:
        return []
    if memory.policy == "mello":  # read by a question-answering loop, not put in front of queries
        from .mello import MelloHandle

        return [MelloHandle(model, memory)]
    return [MemoryWrapper(model, memory)]

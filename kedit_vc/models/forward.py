"""Forward passes that compute only what is needed.

The LM head of a small model is a large share of its compute (SmolLM2: 49k x 576), so
scoring and target optimisation take the decoder's final hidden states and apply the
head only at the positions a loss or metric reads.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch

from .families import blocks_of, decoder_stack, family_of, get_module


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a wrapper such as peft's ``PeftModel``."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def final_hidden(model: torch.nn.Module, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Decoder output after the final norm: [b, t, d_model]."""
    model = unwrap(model)
    base = decoder_stack(model)
    out = base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return out[0] if isinstance(out, tuple) else out.last_hidden_state


_CACHE_KEYWORD: dict[type[torch.nn.Module], str] = {}


def _cache_keyword(model: torch.nn.Module) -> str:
    """The name ``model.forward`` takes the KV cache under: ``cache`` (transformers 5, where
    ``past_key_values`` is deprecated and warns) or ``past_key_values`` (earlier); per class."""
    kind = type(model)
    if kind not in _CACHE_KEYWORD:
        parameters = inspect.signature(kind.forward).parameters
        _CACHE_KEYWORD[kind] = "cache" if "cache" in parameters else "past_key_values"
    return _CACHE_KEYWORD[kind]


def decode_step(model: torch.nn.Module, input_ids: torch.Tensor, cache: Any = None) -> tuple[torch.Tensor, Any]:
    """One incremental forward with a KV cache: logits [b, t, vocab] of ``input_ids`` [b, t]
    read after the tokens ``cache`` holds (None: none yet), and the grown cache."""
    keyword = _cache_keyword(unwrap(model))
    out = model(input_ids=input_ids, use_cache=True, **({} if cache is None else {keyword: cache}))
    return out.logits, out.cache if keyword == "cache" else out.past_key_values


def logits_from_hidden(model: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Apply the LM head (and any logit soft-capping) to hidden rows [..., d] -> [..., vocab]."""
    model = unwrap(model)
    logits = get_module(model, family_of(model).unembed)(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def prefix_states(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  position_ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every block's attention keys and values of a left-padded prefix batch [b, L], as
    ``(keys, values)`` per block ([b, kv_heads, L, head_dim]), computed without gradients.

    For loops that re-run only the tokens after a fixed prefix (``suffix_hidden``): the
    prefix's states do not change, so they are computed once.
    """
    model = unwrap(model)
    base = decoder_stack(model)
    with torch.no_grad():
        out = base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True)
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    if cache is None or not hasattr(cache, "layers"):
        raise TypeError(f"{type(base).__name__} returned no per-layer key/value cache")
    return [(layer.keys, layer.values) for layer in cache.layers]


def suffix_hidden(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  position_ids: torch.Tensor, prefix: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Decoder output after the final norm for ``input_ids`` [b, S] read after ``prefix``
    (``prefix_states`` of the same rows): [b, S, d_model].

    ``attention_mask`` [b, L + S] and ``position_ids`` [b, S] cover the prefix's
    ``L`` positions first. The prefix is copied into a fresh cache, so every call sees it
    unchanged.
    """
    from transformers import DynamicCache

    model = unwrap(model)
    base = decoder_stack(model)
    extra: dict[str, Any] = {}
    if prefix and prefix[0][0].shape[-2] > 0:
        config: Any = model.config
        cache = DynamicCache(config=config)
        for index, (keys, values) in enumerate(prefix):
            cache.update(keys, values, index)
        extra = {_cache_keyword(base): cache, "use_cache": True}
    else:
        extra = {"use_cache": False}
    out = base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **extra)
    return out[0] if isinstance(out, tuple) else out.last_hidden_state


def logits_at(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
              rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Logits only at positions (rows[i], cols[i]): [n, vocab]."""
    hidden = final_hidden(model, input_ids, attention_mask)
    return logits_from_hidden(model, hidden[rows, cols])


class LowerBlockReplay:
    """Run blocks ``0..layer-1`` once, then replay their output on later forwards.

    For optimisation loops whose inputs never change and whose trainable part sits at
    block ``layer`` or above (ROME's and MEMIT's target vectors), the lower blocks give
    the same output at every step. Use as a context manager: the first forward inside
    records block ``layer-1``'s output; after ``arm()`` the lower blocks' ``forward`` is
    patched (a passthrough, and the recorded output for the last), so they cost nothing.
    """

    def __init__(self, model: torch.nn.Module, layer: int) -> None:
        self.layer = layer
        self.blocks = blocks_of(model) if layer > 0 else None
        self.recorded: Any = None
        self.current: Any = None
        self.patched: list[torch.nn.Module] = []
        self.handle: Any = None

    def __enter__(self) -> "LowerBlockReplay":
        if self.blocks is not None:
            def record(_module: torch.nn.Module, _args: tuple, output: Any) -> None:
                self.recorded = _detach(output)
            self.handle = self.blocks[self.layer - 1].register_forward_hook(record)
        return self

    def arm(self) -> None:
        """Start replaying (call after the first forward inside the context)."""
        if self.blocks is None or self.patched or self.recorded is None:
            return
        self.handle.remove()
        self.current = self.recorded
        for index in range(self.layer):
            block = self.blocks[index]
            if index == self.layer - 1:
                block.forward = lambda *args, **kwargs: self.current
            else:
                block.forward = self._passthrough
            self.patched.append(block)

    def select(self, rows: torch.Tensor, width: int) -> None:
        """Replay only sequences ``rows`` of the recorded batch, cut to ``width`` positions.

        For a loop that drops finished sequences: right-padded inputs keep every real
        token of the remaining rows within their own (possibly smaller) width.
        """
        if self.recorded is None:
            return
        if isinstance(self.recorded, tuple):
            self.current = (self.recorded[0][rows, :width],) + tuple(self.recorded[1:])
        else:
            self.current = self.recorded[rows, :width]

    def _passthrough(self, *args: Any, **kwargs: Any) -> Any:
        hidden = args[0] if args else kwargs["hidden_states"]
        return (hidden,) + tuple(self.current[1:]) if isinstance(self.current, tuple) else hidden

    def __exit__(self, *exc: Any) -> None:
        if self.handle is not None:
            self.handle.remove()
        for block in self.patched:
            del block.forward
        self.patched.clear()


def _detach(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output.detach()
    if isinstance(output, tuple):
        return tuple(_detach(o) for o in output)
    return output

"""Context templates: short model-generated prefixes that make keys and targets robust.

ROME averages the key over the bare prompt and ~10 prefixes the model itself writes
("The ...", "Therefore ..."), so the edit holds in varied contexts. Generation is seeded,
so the same model gives the same templates, and cached per model for the session.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from kedit_vc.models.prompting import NO_PREFIX, encode_text, pad_id, prefix_ids

#: The bare prompt as a user types it to an exported model: no ``<|endoftext|>`` prefix.
#: Keys and targets fitted on it too make an edit hold both ways (with SmolLM2 a subject
#: at position 0 sits on the attention sink, so the raw prompt is a different context).
RAW_TEMPLATE = NO_PREFIX + "{}"

_STARTS = ("The", "Therefore", "Because", "I", "You")
#: model -> {(count, length, seed): templates}; weak, so a freed model's entry goes with it
#: (keying by ``id(model)`` would hand a new model that reuses the id the old one's).
_CACHE: "weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple[int, int, int], tuple[str, ...]]]" = (
    weakref.WeakKeyDictionary())


def forget_templates(model: torch.nn.Module) -> None:
    """Drop ``model``'s cached templates: its weights changed, and a fresh process would
    generate them from the new weights (``ops.Evaluator`` calls this whenever it moves the
    weights to another commit)."""
    _CACHE.pop(model, None)


def context_templates(model: torch.nn.Module, tokenizer: Any, count: int, length: int,
                      seed: int = 0, raw: bool = False) -> tuple[str, ...]:
    """``"{}"`` plus ``count`` generated prefixes of ``length`` tokens, each ``"<prefix>. {}"``,
    plus ``RAW_TEMPLATE`` when ``raw`` and the tokenizer gets a prefix (else it is ``"{}"``)."""
    with_raw = raw and bool(prefix_ids(tokenizer))
    base = _generated(model, tokenizer, count, length, seed)
    return base + (RAW_TEMPLATE,) if with_raw else base


def _generated(model: torch.nn.Module, tokenizer: Any, count: int, length: int, seed: int) -> tuple[str, ...]:
    cached = _CACHE.setdefault(model, {})
    key = (count, length, seed)
    if key in cached:
        return cached[key]
    templates = ["{}"]
    if count > 0:
        generator = torch.Generator().manual_seed(seed)
        starts = [_STARTS[i % len(_STARTS)] for i in range(count)]
        texts = sample_continuations(model, tokenizer, starts, length, generator)
        for text in texts:
            clean = " ".join(text.replace("{", " ").replace("}", " ").split())
            templates.append(clean + ". {}")
    cached[key] = tuple(templates)
    return cached[key]


@torch.no_grad()
def sample_continuations(model: torch.nn.Module, tokenizer: Any, starts: list[str], length: int,
                         generator: torch.Generator, top_k: int = 5) -> list[str]:
    """Top-k sample ``length`` tokens after each start (no KV cache needed for short texts)."""
    rows = [encode_text(tokenizer, s) for s in starts]
    width = max(len(r) for r in rows)
    # Left-pad so every row's last token sits at the same position.
    ids = torch.full((len(rows), width), pad_id(tokenizer), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    prefix_len = width
    for _ in range(length):
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits[:, -1]
        top = logits.topk(top_k, dim=-1)
        probs = torch.softmax(top.values.float(), dim=-1)
        choice = torch.multinomial(probs, 1, generator=generator)
        next_ids = top.indices.gather(-1, choice)
        ids = torch.cat([ids, next_ids], dim=-1)
        mask = torch.cat([mask, torch.ones_like(next_ids)], dim=-1)
    texts = []
    for i, start in enumerate(starts):
        continuation = tokenizer.decode(ids[i, prefix_len:], skip_special_tokens=True)
        texts.append(start + continuation)
    return texts

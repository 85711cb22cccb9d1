"""One way to turn text into model input, shared by editors and evaluation.

SmolLM2's tokenizer adds no BOS token, so a prompt that opens with its subject
("Paris is the capital of") puts the subject's first token at position 0, the
attention-sink position whose hidden state barely depends on content. ROME then reads
a useless key there, and evaluation sees a different model than the editor did. We
therefore prepend one neutral prefix token to every sequence, unless the tokenizer
already adds a BOS itself: the document separator ``<|endoftext|>`` when the vocabulary
has one, else the BOS token, else EOS. Measured on SmolLM2 (13 well-known facts, mean
NLL of the answer): no prefix 1.92, ``<|endoftext|>`` 1.05, ``<|im_start|>`` (its BOS)
2.34, ``<|im_end|>`` (its EOS) 2.24 -- the document separator is the neutral one.
Keys, target vectors and evaluation all go through ``encode_prompts``, so they agree.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

DOCUMENT_SEPARATOR = "<|endoftext|>"

#: A text that starts with this character is encoded without the shared prefix: the
#: "raw" context template editors add so an edit also holds when a user prompts the
#: exported model without ``<|endoftext|>`` (``editors/common/templates.RAW_TEMPLATE``).
NO_PREFIX = "\x00"


def prefix_ids(tokenizer: Any) -> list[int]:
    """Token ids to put before every prompt (empty if the tokenizer adds its own BOS)."""
    cached = getattr(tokenizer, "_kvc_prefix_ids", None)
    if cached is not None:
        return list(cached)
    probe = tokenizer("a", add_special_tokens=True).input_ids
    bos = tokenizer.bos_token_id
    if bos is not None and probe and probe[0] == bos:
        ids: list[int] = []  # the tokenizer adds BOS itself (Llama-2, Gemma)
    else:
        separator = tokenizer.convert_tokens_to_ids(DOCUMENT_SEPARATOR)
        if separator is not None and tokenizer.convert_ids_to_tokens(separator) != DOCUMENT_SEPARATOR:
            separator = None  # mapped to <unk>: the vocabulary has no such token
        candidate = next((c for c in (separator, bos, tokenizer.eos_token_id) if c is not None), None)
        ids = [int(candidate)] if candidate is not None else []
    try:
        tokenizer._kvc_prefix_ids = tuple(ids)
    except AttributeError:  # pragma: no cover - exotic tokenizer objects
        pass
    return ids


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` with the shared prefix (and the tokenizer's own specials).

    ``text`` opening with ``NO_PREFIX`` is encoded as a user's raw prompt: no prefix.
    """
    if text.startswith(NO_PREFIX):
        return list(tokenizer(text[len(NO_PREFIX):], add_special_tokens=True).input_ids)
    return prefix_ids(tokenizer) + list(tokenizer(text, add_special_tokens=True).input_ids)


def encode_continuation(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a continuation (no specials, no prefix), e.g. ``" Paris"``."""
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists into (input_ids [b, t], attention_mask [b, t])."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def pad_id(tokenizer: Any) -> int:
    """A safe padding id (padded positions are masked and never scored)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def encode_prompts(tokenizer: Any, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode prompts with the shared prefix, right-padded: (input_ids, attention_mask) [b, t]."""
    return pad_batch([encode_text(tokenizer, t) for t in texts], pad_id(tokenizer))

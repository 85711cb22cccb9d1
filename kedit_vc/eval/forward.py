"""Teacher-forced scoring of continuations, computing logits only where they are needed.

A causal LM's vocabulary is large (49k for SmolLM2), so instead of ``model(...).logits``
([b, t, V]) we take final hidden states [b, t, d] and apply the LM head only at the
positions that predict continuation tokens ([n, d] -> [n, V]), through the family-aware
helpers of ``kedit_vc.models.forward`` that the editors use too. Every sequence is
``prefix_ids + prompt + continuation``, with the prefix from ``kedit_vc.models.prompting``
so evaluation sees inputs exactly as the editors do.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from kedit_vc.models.forward import final_hidden, logits_from_hidden
from kedit_vc.models.prompting import encode_continuation, encode_text, pad_batch, pad_id


@dataclass(frozen=True)
class ContinuationScore:
    """Scores of one continuation: mean NLL (nats), token accuracy, ids [L] and argmax [L]."""

    nll: float
    acc: float
    target_ids: tuple[int, ...]
    argmax_ids: tuple[int, ...]


def encode_prompt(tokenizer: Any, prompt: str, prefixed: bool = True) -> list[int]:
    """Prompt ids with the shared prefix (as editors see prompts) or, ``prefixed=False``, raw:
    the tokenizer's own encoding with nothing added (as a user prompts an exported model)."""
    if prefixed:
        return encode_text(tokenizer, prompt)
    return list(tokenizer(prompt, add_special_tokens=True).input_ids)


def encode_pair(
    tokenizer: Any, prompt: str, continuation: str, prefixed: bool = True
) -> tuple[list[int], list[int]]:
    """Prompt ids (with the shared prefix unless ``prefixed=False``) and continuation ids (no specials).

    The continuation is tokenized on its own, as the field does with ``tok(" " + target)``,
    so its ids do not depend on the prompt. ``prefixed=False`` encodes the prompt as a user
    of the exported model would: the tokenizer's own encoding, nothing added.
    """
    prompt_ids = encode_prompt(tokenizer, prompt, prefixed)
    cont_ids = encode_continuation(tokenizer, continuation)
    if not cont_ids:
        raise ValueError(f"continuation {continuation!r} tokenizes to nothing")
    if not prompt_ids:
        raise ValueError("an empty prompt with no prefix token leaves nothing to predict the first token from")
    return prompt_ids, cont_ids


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _score_batch(
    model: torch.nn.Module, pad: int, batch: Sequence[tuple[list[int], list[int]]]
) -> list[ContinuationScore]:
    device = _device(model)
    ids, mask = pad_batch([p + c for p, c in batch], pad)  # right padding: positions stay 0..t-1
    hidden = final_hidden(model, ids.to(device), mask.to(device))  # [b, t, d]
    rows, cols, targets = [], [], []
    for row, (prompt_ids, cont_ids) in enumerate(batch):
        start = len(prompt_ids)
        for j, tok in enumerate(cont_ids):
            rows.append(row)
            cols.append(start + j - 1)  # the position whose output predicts token start+j
            targets.append(tok)
    rows_t = torch.tensor(rows, device=device)
    cols_t = torch.tensor(cols, device=device)
    target_t = torch.tensor(targets, device=device)
    logits = logits_from_hidden(model, hidden[rows_t, cols_t]).float()  # [n, V], float32
    nll = -torch.log_softmax(logits, dim=-1).gather(1, target_t[:, None])[:, 0]  # [n]
    argmax = logits.argmax(dim=-1)  # [n]
    out, offset = [], 0
    for _, cont_ids in batch:
        n = len(cont_ids)
        am = tuple(int(x) for x in argmax[offset : offset + n].tolist())
        hits = sum(a == t for a, t in zip(am, cont_ids))
        out.append(ContinuationScore(float(nll[offset : offset + n].mean()), hits / n, tuple(cont_ids), am))
        offset += n
    return out


def score_continuations(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 16,
    progress: bool = False,
    prefixed: bool = True,
) -> list[ContinuationScore]:
    """Score ``(prompt, continuation)`` pairs (continuation with its leading space).

    ``prefixed=False`` scores raw prompts (see ``encode_pair``).

    Sequences are sorted by length before batching to keep padding small; results come
    back in input order. The model is put in eval mode for the call and restored after.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    encoded = [encode_pair(tokenizer, p, c, prefixed) for p, c in pairs]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]) + len(encoded[i][1]))
    pad = pad_id(tokenizer)
    results: list[ContinuationScore | None] = [None] * len(encoded)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for i, score in zip(chunk, _score_batch(model, pad, [encoded[i] for i in chunk])):
                results[i] = score
            if progress:
                print(f"\rscored {min(start + batch_size, len(order))}/{len(order)}", end="", file=sys.stderr)
        if progress and order:
            print(file=sys.stderr)
    finally:
        model.train(was_training)
    return [r for r in results if r is not None]


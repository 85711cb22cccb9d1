"""Greedy continuations of probe prompts, batched and bounded, for the generative metrics.

Each prompt gets a budget of new tokens a few more than its expected answer's length
(``budget``), at most ``MAX_NEW_TOKENS`` unless the answer itself is longer. Prompts are
sorted by length and generated in batches with left padding (so every row's next token
sits at the last position), greedy and therefore deterministic; each row keeps only its
own budget's tokens, so a continuation does not depend on which budgets share its batch.

``prefixed=True`` encodes prompts as the editors and teacher-forced scores do (the
shared prefix of ``kedit_vc.models.prompting``); ``prefixed=False`` as a user prompts an
exported model: the tokenizer's own encoding, nothing added.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from kedit_vc.eval.forward import encode_prompt
from kedit_vc.models.prompting import encode_continuation, pad_id

#: Extra tokens beyond the answer's own length, and the usual cap on new tokens.
SLACK_TOKENS = 3
MAX_NEW_TOKENS = 10


def budget(tokenizer: Any, answer: str) -> int:
    """New tokens to generate for ``answer``: its length + ``SLACK_TOKENS``, capped at ``MAX_NEW_TOKENS``.

    Never fewer than the answer's own token count, so a long answer can still be given.
    """
    n = len(encode_continuation(tokenizer, " " + answer))
    return max(n, min(n + SLACK_TOKENS, MAX_NEW_TOKENS))


def _left_pad(sequences: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad id lists: (input_ids [b, t], attention_mask [b, t])."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, width - len(seq):] = 1
    return ids, mask


@torch.no_grad()
def greedy_continuations(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    budgets: Sequence[int],
    prefixed: bool = True,
    batch_size: int = 16,
) -> list[str]:
    """The decoded greedy continuation (new tokens only) of each prompt, in input order.

    ``budgets[i]`` new tokens for ``prompts[i]``; generation stops early at EOS. The model
    is put in eval mode for the call and restored after.
    """
    if len(prompts) != len(budgets):
        raise ValueError(f"{len(prompts)} prompts but {len(budgets)} budgets")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    encoded = [encode_prompt(tokenizer, p, prefixed) for p in prompts]
    for prompt, prompt_ids in zip(prompts, encoded):
        if not prompt_ids:
            raise ValueError(f"prompt {prompt!r} encodes to nothing: no token to continue from")
    # A prompt asked several times (MQuAKE: one question per answer alias) is generated once,
    # for the largest budget asked; each ask reads the first ``budgets[i]`` tokens of it, which
    # is what greedy decoding with that budget gives.
    wanted: dict[tuple[int, ...], int] = {}
    for ids_, b in zip(encoded, budgets):
        key = tuple(ids_)
        wanted[key] = max(wanted.get(key, 0), b)
    keys = sorted(wanted, key=lambda k: (len(k), wanted[k]))
    pad = pad_id(tokenizer)
    device = next(model.parameters()).device
    tokens: dict[tuple[int, ...], list[int]] = {}
    generate: Any = model.generate  # transformers' GenerationMixin
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(keys), batch_size):
            chunk = keys[start : start + batch_size]
            ids, mask = _left_pad([list(k) for k in chunk], pad)
            generated = generate(
                input_ids=ids.to(device), attention_mask=mask.to(device),
                max_new_tokens=max(wanted[k] for k in chunk), min_new_tokens=0,
                do_sample=False, num_beams=1, top_k=None, top_p=None, temperature=None,
                pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
            )[:, ids.shape[1]:]  # [b, new]
            for row, key in enumerate(chunk):
                tokens[key] = generated[row, : wanted[key]].tolist()
    finally:
        model.train(was_training)
    out: list[str] = []
    for ids_, b in zip(encoded, budgets):
        new = tokens[tuple(ids_)][:b]
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id in new:
            new = new[: new.index(tokenizer.eos_token_id)]
        out.append(tokenizer.decode(new, skip_special_tokens=True))
    return out

"""Text to measure key statistics on, without downloading anything.

ROME and MEMIT estimate ``C = E[k kᵀ]`` on Wikipedia; there is no Wikipedia here. The
default corpus is therefore text the model writes itself: seeded top-k sampling from
the document separator, so it follows the model's own distribution of contexts, and the
same model and seed always give the same tokens. A user may pass a text file or folder
instead (``KVC_STATS_TEXT`` or the ``corpus`` argument).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from kedit_vc.errors import UsageError
from kedit_vc.models.families import max_positions
from kedit_vc.models.forward import decode_step
from kedit_vc.models.prompting import prefix_ids

SAMPLE_LENGTH = 128     # tokens per sampled document
SAMPLE_BATCH = 256      # documents generated together (decoding is memory-bound: batch wide)
SAMPLE_TOP_K = 40


def corpus_id(corpus: str | None, seed: int) -> str:
    if corpus is None:
        return f"self-sampled-s{seed}-k{SAMPLE_TOP_K}-l{SAMPLE_LENGTH}"
    path = Path(corpus)
    if not path.exists():
        raise UsageError(f"statistics corpus {corpus}: no such file or folder (set KVC_STATS_TEXT to a text "
                         "file or a folder of .txt files, or unset it to use the model's own samples)")
    files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise UsageError(f"statistics corpus {corpus}: the folder holds no .txt files")
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return "text-" + digest.hexdigest()[:16]


@torch.no_grad()
def sample_documents(model: torch.nn.Module, tokenizer: Any, n_tokens: int, seed: int,
                     on_step: Callable[[bool], None] | None = None) -> Iterator[torch.Tensor]:
    """Sample documents of SAMPLE_LENGTH tokens with a KV cache; yield each batch [b, t].

    ``on_step(counts)`` is called before every forward; ``counts`` is False for the first
    forward of a batch, which reads only the prefix token (the attention sink, whose keys
    are outliers no edit ever uses), so statistics hooks can skip it.
    """
    generator = torch.Generator().manual_seed(seed)
    start = prefix_ids(tokenizer) or [tokenizer.eos_token_id or 0]
    length = min(SAMPLE_LENGTH, max_positions(model) - len(start))
    produced = 0
    while produced < n_tokens:
        batch = min(SAMPLE_BATCH, max(1, (n_tokens - produced + length - 1) // length))
        ids = torch.tensor([start] * batch, dtype=torch.long)
        cache = None
        step_input = ids
        for step in range(length):
            if on_step is not None:
                on_step(step > 0)
            logits, cache = decode_step(model, step_input, cache)
            top = logits[:, -1].float().topk(SAMPLE_TOP_K, dim=-1)
            choice = torch.multinomial(torch.softmax(top.values, -1), 1, generator=generator)
            step_input = top.indices.gather(-1, choice)
            ids = torch.cat([ids, step_input], dim=-1)
        produced += batch * (length - 1)
        yield ids


def text_batches(tokenizer: Any, corpus: str, n_tokens: int, max_length: int = SAMPLE_LENGTH,
                 ) -> Iterator[torch.Tensor]:
    """Yield [1, <=SAMPLE_LENGTH] token chunks of a text file or folder of .txt files."""
    path = Path(corpus)
    if not path.exists():
        raise UsageError(f"statistics corpus {corpus}: no such file or folder (set KVC_STATS_TEXT to a text "
                         "file or a folder of .txt files, or unset it to use the model's own samples)")
    files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise UsageError(f"statistics corpus {corpus}: the folder holds no .txt files")
    if not files or not all(f.is_file() for f in files):
        raise UsageError(f"statistics corpus {corpus!r}: no such text file or folder of .txt files")
    produced = 0
    prefix = prefix_ids(tokenizer)
    length = min(SAMPLE_LENGTH, max_length) - len(prefix)
    for file in files:
        ids = tokenizer(file.read_text(errors="replace"), add_special_tokens=False).input_ids
        for start in range(0, len(ids), length):
            chunk = prefix + ids[start:start + length]
            yield torch.tensor([chunk])
            produced += len(chunk)
            if produced >= n_tokens:
                return

"""Fluency and perplexity: model-level measurements the field reports beside edit metrics.

Fluency follows ROME's reference ``compute_n_gram_entropy``: per text, the Shannon
entropy (bits) of its word bigram and trigram frequency distributions, weighted 2/3 and
4/3, averaged (arithmetic mean of the two weighted values); then the mean over texts.
ROME tokenizes words with NLTK's ``word_tokenize``; ``word_tokens`` is a dependency-free
approximation (words, numbers, contractions and punctuation as separate tokens).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Sequence

import torch

from kedit_vc.eval.forward import score_continuations
from kedit_vc.models.prompting import encode_prompts

_WORD = re.compile(r"\w+(?=n't\b)|n't\b|'\w+|\d+(?:[.,]\d+)+|\w+(?:-\w+)*|\.\.\.|[^\w\s]")

#: A fixed, neutral English text for perplexity (written for this project).
DEFAULT_PERPLEXITY_TEXT = (
    "The river runs through the middle of the old town, and most of its bridges were built "
    "of stone in the eighteenth century. On market days farmers bring vegetables, cheese and "
    "bread to the square in front of the church. In the evening the streets are quiet, and the "
    "only sound is the water moving under the arches."
)


def word_tokens(text: str) -> list[str]:
    """Words and punctuation of ``text`` (an approximation of NLTK's ``word_tokenize``)."""
    return _WORD.findall(text)


def ngram_entropy_bits(tokens: Sequence[str], n: int) -> float:
    """Shannon entropy (bits) of the frequency distribution of ``tokens``' n-grams (0 if none)."""
    counts = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


def text_ngram_entropy(text: str, ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)) -> float:
    """ROME's ``compute_n_gram_entropy`` of one text: mean of the weighted n-gram entropies."""
    tokens = word_tokens(text)
    weighted = [w * ngram_entropy_bits(tokens, n) for n, w in zip(ns, weights)]
    return sum(weighted) / len(weighted)


def ngram_entropy(texts: Sequence[str]) -> float:
    """Mean ``text_ngram_entropy`` over texts (ROME's ``n_gram_entropy`` with agg="arith")."""
    if not texts:
        raise ValueError("no texts to measure")
    return sum(text_ngram_entropy(t) for t in texts) / len(texts)


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int = 64,
    sample: bool = False,
    top_k: int = 5,
    seed: int = 0,
) -> list[str]:
    """Prompt plus continuation for each prompt, greedy or top-k sampled (ROME samples top-5).

    One prompt at a time, so no padding enters generation; sampling is seeded and leaves
    the global RNG as it was.
    """
    device = next(model.parameters()).device
    texts = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for prompt in prompts:
            ids, mask = encode_prompts(tokenizer, [prompt])
            generate: Any = model.generate  # transformers' GenerationMixin
            out = generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                do_sample=sample, top_k=top_k if sample else None, top_p=None, temperature=None,
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            )
            new = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
            texts.append(prompt + new)
    return texts


def fluency(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int = 64,
            sample: bool = False, seed: int = 0) -> float:
    """N-gram entropy of generations from ``prompts`` (higher: less repetitive)."""
    return ngram_entropy(generate(model, tokenizer, prompts, max_new_tokens, sample=sample, seed=seed))


def perplexity(model: torch.nn.Module, tokenizer: Any, text: str = DEFAULT_PERPLEXITY_TEXT) -> float:
    """exp(mean NLL) of ``text``'s tokens after the shared prefix token."""
    (score,) = score_continuations(model, tokenizer, [("", text)], batch_size=1)
    return math.exp(score.nll)

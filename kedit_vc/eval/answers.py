"""Does a generated text give an answer? Text normalisation for generative metrics.

Generative metrics judge what the model says, not NLL comparisons (WILD, arXiv
2502.11177): the greedy continuation of a prompt counts when it contains the answer.
Both sides are normalised the same way -- case folded, punctuation turned into spaces,
whitespace collapsed -- and the answer must appear as whole words, so " Rome." gives
"Rome" while "Romeo" does not. No torch here: the metrics registry uses this.
"""

from __future__ import annotations

import unicodedata


def normalise(text: str) -> str:
    """Case-folded words of ``text`` joined by single spaces (punctuation and symbols dropped)."""
    chars = [" " if unicodedata.category(c)[0] in "PSZC" else c for c in unicodedata.normalize("NFKC", text)]
    return " ".join("".join(chars).casefold().split())


def contains_answer(generated: str, answer: str) -> bool:
    """``answer``'s normalised words occur, as whole words, in ``generated``'s (empty answers never do)."""
    needle = normalise(answer)
    return bool(needle) and f" {needle} " in f" {normalise(generated)} "

"""``ask``: a question answered by a revision's MeLLo memory (``kvc ask``).

MeLLo revisions change no weight and put nothing in front of ordinary prompts: their edits
are read by a question-decomposition loop (``kedit_vc.patches.memory.mello``), which the
loaded revision offers as ``model.answer``. A revision without a live MeLLo memory has no
such loop; it is refused with what to do instead.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from kedit_vc.errors import KvcError

if TYPE_CHECKING:
    from kedit_vc.patches.memory.mello import Answer


class NoMelloMemory(KvcError):
    """The revision holds no live MeLLo facts to answer with."""


def ask(store_dir: str | os.PathLike[str], rev: str, question: str) -> "Answer":
    """MeLLo's answer to ``question`` at revision ``rev`` of the store at or above ``store_dir``."""
    if not question.strip():
        raise KvcError("the question is empty")
    from .load import load_edited

    model, tokenizer = load_edited(store_dir, rev)
    answer = model.__dict__.get("answer")
    if answer is None:
        raise NoMelloMemory(f"revision {rev} has no live MeLLo facts: commit edits with `method mello` to ask "
                            "multi-hop questions over them, or try a prompt with `kvc model generate . PROMPT "
                            f"--rev {rev}`")
    result: Answer = answer(question, tokenizer)
    return result

"""``kvc blame``: which live commits move the model's answer to a prompt, and by how much.

Leave one out: for each commit live at HEAD, the weights are HEAD's minus that commit's
delta (deltas add, so this is HEAD's cache minus one materialised delta, not a
re-materialisation from the base: one subtraction and one forward per commit), and the
teacher-forced log-probability of `` ANSWER`` after PROMPT is compared with HEAD's.
``effect`` = log p at HEAD - log p without the commit (nats): positive when the commit
makes the answer likelier. Rows come sorted by ``|effect|``, largest first.

ANSWER defaults to the first word of HEAD's own greedy continuation (what the model says now).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.errors import UsageError

from .probe import RevisionModel, first_word

if TYPE_CHECKING:
    from kedit_vc.store import Store


@dataclass(frozen=True)
class BlameRow:
    sha: str
    message: str
    edit_ids: tuple[str, ...]
    logprob_without: float
    effect: float  # log p at HEAD - log p without this commit

    def to_json(self) -> dict:
        return {"commit": self.sha, "message": self.message, "edit_ids": list(self.edit_ids),
                "logprob_without": self.logprob_without, "effect": self.effect}


@dataclass(frozen=True)
class BlameResult:
    prompt: str
    answer: str
    head: str
    said: str
    logprob: float  # at HEAD
    rows: tuple[BlameRow, ...]
    seconds: float

    def to_json(self) -> dict:
        return {"prompt": self.prompt, "answer": self.answer, "head": self.head, "said": self.said,
                "logprob": self.logprob, "rows": [r.to_json() for r in self.rows], "seconds": round(self.seconds, 4)}


def blame(store: "Store", prompt: str, answer: str | None = None, rev: str = "HEAD", *,
          model: RevisionModel | None = None) -> BlameResult:
    """Each live commit at ``rev`` left out in turn; see the module docstring."""
    from kedit_vc.delta import materialize

    if not prompt.strip():
        raise UsageError("the prompt must not be empty")
    start = time.perf_counter()
    head = store.resolve(rev)
    rm = model if model is not None else RevisionModel(store)
    rm.move_to(head)
    said = rm.continuation(prompt)
    if answer is None:
        answer = first_word(said)
        if not answer:
            raise UsageError(f"the model says nothing after {prompt!r} at {head[:10]}; pass --answer")
    at_head = rm.logprob(prompt, answer)
    rows = []
    for sha in store.live_commits(head):
        record = store.read_commit(sha)
        delta = record.delta()
        assert delta is not None  # live commits carry deltas
        with rm.without(materialize([delta])):
            without = rm.logprob(prompt, answer)
        rows.append(BlameRow(sha, next(iter(record.message.splitlines()), ""), record.edit_ids, without,
                             at_head - without))
    rows.sort(key=lambda r: -abs(r.effect))
    return BlameResult(prompt, answer, head, said, at_head, tuple(rows), time.perf_counter() - start)

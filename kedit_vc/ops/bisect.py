"""``kvc bisect``: the first commit on the first-parent chain where a probe stops giving its answer.

The probe is judged by **greedy generation**: the model's greedy continuation of PROMPT
(a few tokens longer than ANSWER) must contain ANSWER as whole words, case and
punctuation aside, the rule of the ``gen_*`` metrics (``eval.answers.contains_answer``).
That is what a user of the edited model sees; a teacher-forced score would call a fact
known that the model never says.

Between GOOD (default: the initial commit, the base model) and BAD (default: HEAD) lie
``n`` candidate commits (GOOD excluded, BAD included). BAD is evaluated first (if the probe
passes there, there is nothing to find), then a binary search over the candidates: at most
``1 + ceil(log2 n)`` revisions evaluated. GOOD is assumed to pass (``verify_good`` checks
it, one evaluation more). Each revision is materialised as base + ``Store.live_sum(rev)``.
If the probe fails and passes again along the way, the search finds one commit where it
goes from passing to failing, not necessarily the first.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from kedit_vc.errors import StoreError, UsageError

from .probe import RevisionModel

if TYPE_CHECKING:
    from kedit_vc.store import Store


@dataclass(frozen=True)
class BisectStep:
    """One evaluated revision: its position on the chain (root = 0), verdict and text."""

    sha: str
    position: int
    passed: bool
    said: str
    seconds: float
    message: str

    def to_json(self) -> dict:
        return {"commit": self.sha, "position": self.position, "passed": self.passed, "said": self.said,
                "seconds": round(self.seconds, 4), "message": self.message}


@dataclass(frozen=True)
class BisectResult:
    """``culprit``: the first failing commit (None when the probe passes at BAD)."""

    prompt: str
    expect: str
    good: str
    bad: str
    candidates: int
    steps: tuple[BisectStep, ...]
    culprit: str | None
    culprit_message: str | None
    culprit_spec: str | None
    culprit_edit_ids: tuple[str, ...]
    seconds: float

    @property
    def evaluations(self) -> int:
        return len(self.steps)

    @property
    def bound(self) -> int:
        """The most evaluations the search may take: BAD, then ceil(log2 n)."""
        return 1 + (math.ceil(math.log2(self.candidates)) if self.candidates > 1 else 0)

    def to_json(self) -> dict:
        return {"prompt": self.prompt, "expect": self.expect, "good": self.good, "bad": self.bad,
                "candidates": self.candidates, "evaluations": self.evaluations, "bound": self.bound,
                "steps": [s.to_json() for s in self.steps], "culprit": self.culprit,
                "culprit_message": self.culprit_message, "culprit_spec": self.culprit_spec,
                "culprit_edit_ids": list(self.culprit_edit_ids), "seconds": round(self.seconds, 4),
                "judged_by": "greedy"}


def bisect(
    store: "Store",
    prompt: str,
    expect: str,
    good: str | None = None,
    bad: str | None = None,
    *,
    verify_good: bool = False,
    model: RevisionModel | None = None,
    on_step: Callable[[BisectStep], None] | None = None,
) -> BisectResult:
    """Find the first commit in (GOOD, BAD] where ``prompt``'s greedy answer stops containing ``expect``.

    ``model``: an already loaded ``RevisionModel`` (default: load the store's base model).
    ``on_step`` is called after each evaluation (the CLI prints it).
    """
    if not prompt.strip() or not expect.strip():
        raise UsageError("--probe and --expect must not be empty")
    start = time.perf_counter()
    bad_sha = store.resolve(bad or "HEAD")
    chain = store.chain(bad_sha)
    good_sha = store.resolve(good) if good else chain[0]
    if good_sha not in chain:
        raise StoreError(f"--good {good} ({good_sha[:10]}) is not on the first-parent history of "
                         f"{bad or 'HEAD'}; pick an older commit from `kvc log --oneline`")
    g = chain.index(good_sha)
    if g == len(chain) - 1:
        raise UsageError("--good and --bad are the same commit: nothing to search")
    candidates = chain[g + 1:]
    rm = model if model is not None else RevisionModel(store)
    steps: list[BisectStep] = []
    verdicts: dict[str, bool] = {}

    def passes(sha: str) -> bool:
        if sha not in verdicts:
            t0 = time.perf_counter()
            rm.move_to(sha)
            said = rm.says(prompt, expect)
            message = next(iter(store.read_commit(sha).message.splitlines()), "")
            step = BisectStep(sha, chain.index(sha), said.passed, said.text, time.perf_counter() - t0, message)
            steps.append(step)
            verdicts[sha] = said.passed
            if on_step is not None:
                on_step(step)
        return verdicts[sha]

    culprit: str | None = None
    if verify_good and not passes(good_sha):
        raise StoreError(f"the probe already fails at --good {good_sha[:10]}; pick an older good commit")
    if not passes(bad_sha):
        lo, hi = 0, len(candidates) - 1  # the first failing candidate is in [lo, hi]; hi fails
        while lo < hi:
            mid = (lo + hi) // 2
            if passes(candidates[mid]):
                lo = mid + 1
            else:
                hi = mid
        culprit = candidates[lo]
    record = store.read_commit(culprit) if culprit else None
    return BisectResult(prompt, expect, good_sha, bad_sha, len(candidates), tuple(steps), culprit,
                        record.message if record else None, record.spec_text if record else None,
                        record.edit_ids if record else (), time.perf_counter() - start)

"""One prompt asked of the model at any revision of a store: what ``bisect`` and ``blame`` share.

``RevisionModel`` holds the base model and moves it between revisions through the store's
``live_sum`` (HEAD: the HEAD cache, one file; elsewhere the live deltas at that commit)
and ``Weights`` (base + sum, never accumulating rounding). ``without`` takes one commit's
delta out of the current weights for the length of a block, out of place, so the weights
come back bit for bit.

The two questions asked, both on prompts encoded as the editors and ``kvc eval`` encode
them (the shared prefix of ``kedit_vc.models.prompting``):

* ``says``: the greedy continuation, and whether it contains the answer as whole words
  (``eval.answers.contains_answer``, the ``gen_*`` metrics' rule);
* ``logprob``: the teacher-forced log-probability of `` ANSWER`` (sum over its tokens, nats).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Mapping

import torch

from kedit_vc.errors import UsageError

if TYPE_CHECKING:
    from kedit_vc.models import LoadedModel
    from kedit_vc.store import Store

    from .weights import Weights


@dataclass(frozen=True)
class Said:
    """A greedy continuation and whether it gives the expected answer."""

    text: str
    passed: bool


def first_word(text: str) -> str:
    """The first word of a continuation, without the punctuation around it ("" if none)."""
    for word in text.split():
        stripped = word.strip(".,;:!?\"'()[]")
        if stripped:
            return stripped
    return ""


class RevisionModel:
    """The store's base model, moved between revisions (``move_to``) and asked one prompt.

    ``loaded``/``weights``: a model already loaded (and its ``Weights``, when several
    stores on the same base share one model, as tests and benchmarks do); by default the
    store's base model is loaded and checked against its fingerprint.
    """

    def __init__(self, store: "Store", loaded: "LoadedModel | None" = None, weights: "Weights | None" = None,
                 progress: bool = False) -> None:
        from .weights import Weights, load_base

        self.store = store
        if loaded is None:
            loaded = load_base(store, progress=progress)
        else:
            store.check_base(loaded.fingerprint)
        self.loaded = loaded
        self.weights = weights if weights is not None else Weights(loaded.model)
        self.at: str | None = None

    def move_to(self, sha: str) -> None:
        """Base weights + the live deltas at ``sha``."""
        if self.at != sha:
            self.weights.set_deltas([self.store.live_sum(sha)])
            self.at = sha

    def says(self, prompt: str, answer: str) -> Said:
        """The greedy continuation of ``prompt`` (a few tokens more than ``answer`` has)."""
        from kedit_vc.eval.answers import contains_answer
        from kedit_vc.eval.generative import budget, greedy_continuations

        tokenizer = self.loaded.tokenizer
        text = greedy_continuations(self.loaded.model, tokenizer, [prompt], [budget(tokenizer, answer)])[0]
        return Said(text, contains_answer(text, answer))

    def continuation(self, prompt: str) -> str:
        """The greedy continuation of ``prompt``, up to ``MAX_NEW_TOKENS`` tokens."""
        from kedit_vc.eval.generative import MAX_NEW_TOKENS, greedy_continuations

        return greedy_continuations(self.loaded.model, self.loaded.tokenizer, [prompt], [MAX_NEW_TOKENS])[0]

    def logprob(self, prompt: str, answer: str) -> float:
        """log p(`` answer`` | prompt), teacher-forced, summed over the answer's tokens (nats)."""
        from kedit_vc.eval.forward import score_continuations

        try:
            score = score_continuations(self.loaded.model, self.loaded.tokenizer, [(prompt, " " + answer)])[0]
        except ValueError as error:
            raise UsageError(f"cannot score {answer!r} after {prompt!r}: {error}") from None
        return -score.nll * len(score.target_ids)

    @contextmanager
    def without(self, sums: Mapping[str, torch.Tensor]) -> Iterator[None]:
        """The current weights minus ``sums`` (name -> dense [out, in]) inside the block.

        Out of place: each parameter gets new storage ``current - sum`` and its old storage
        back afterwards, so the weights return bit for bit and a memory-mapped base
        parameter is never written."""
        params = self.loaded.model.state_dict(keep_vars=True)
        kept: dict[str, torch.Tensor] = {}
        try:
            with torch.no_grad():
                for name, value in sums.items():
                    param = params[name]
                    kept[name] = param.data
                    param.data = param.data - value.to(param.device, param.dtype)
            yield
        finally:
            for name, data in kept.items():
                params[name].data = data

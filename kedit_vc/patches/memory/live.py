"""The live edit memory of a revision, and what it puts in front of a query.

``live_memory``: the union of the live commits' facts, oldest first (a fact id written again
by a later commit replaces the earlier record), with the newest patch's settings. A revision
holds the memory of one in-context method: mixing IKE and MemPrompt commits is refused.

``Retriever`` (built when the memory is attached, by the model it is attached to) decides,
for each position of a query, which context goes before it:

* scores: for fact f and query position i, the highest cosine similarity between the fact's
  key and the query's hidden states at block ``layer``, over positions 1..i (causal: position
  i's context depends only on tokens up to i, so a teacher-forced answer never chooses its
  own context). The key is, with ``retriever = "subject"`` (default), the state of the fact
  prompt's last subject token (the position ROME reads a subject from); with ``"mean"``, the
  prompt's mean-pooled state, compared with the mean of positions 1..i.
* ``ike``: the best-scoring fact is the query's "New Fact"; its context is its ``k`` nearest
  demonstrations (mean-pooled demonstration text against the fact's copy demonstration, most
  similar first, as EasyEdit orders them; the fact's own update and retain demonstrations are
  left out, since they quote its paraphrase and neighbourhood prompts) then its head
  ``New Fact: <prompt> <new object>\\nPrompt:``. IKE always prepends.
* ``memprompt``: the facts scoring at least ``threshold`` (at most ``max_facts``, best last)
  put their copy demonstration and head in front, after the copy demonstrations of the
  ``shots`` next-best facts (worked examples of using the memory, the role of the paper's
  few-shot prompt); below it, nothing: the query runs unchanged.
* ``mello``: nothing is put in front of a query; ``mello.Mello`` scores subquestions against
  the keys and reads the nearest fact into its question-answering loop.
* ``serac``: scores are the trained scope classifier's probabilities (``editors.serac.classifier``,
  loaded by the content hash the commit recorded); the best fact at or above ``threshold``
  puts its copy demonstration and head in front, after the copy demonstrations of the
  ``shots`` next-best facts (the counterfactual model is the base
  model reading the edit), below it nothing: the base model, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from kedit_vc.patches.registry import PatchError

from .core import MemoryFact, MemoryPatch
from .embed import embed_sequences, hidden_states, normalized, prefix_means

RETRIEVERS = ("subject", "mean")


@dataclass(frozen=True)
class LiveMemory:
    """The facts in effect (oldest first), the settings of the newest patch and the lead ids."""

    facts: tuple[MemoryFact, ...]
    settings: Mapping[str, Any]
    lead_ids: tuple[int, ...]

    @property
    def policy(self) -> str:
        return str(self.settings["policy"])


def live_memory(patches: Iterable[MemoryPatch]) -> LiveMemory | None:
    """The live memory of ``patches`` (live commits' memory patches, oldest first), or None."""
    patches = list(patches)
    if not patches:
        return None
    policies = sorted({p.policy for p in patches})
    if len(policies) > 1:
        raise PatchError(f"this revision's edit memory mixes methods {' and '.join(policies)}; a revision can use one "
                         "in-context method: revert the commits of the other")
    facts: dict[str, MemoryFact] = {}
    for patch in patches:
        for fact in patch.facts:
            facts.pop(fact.id, None)
            facts[fact.id] = fact
    newest = patches[-1]
    return LiveMemory(tuple(facts.values()), newest.settings, newest.lead_ids)


class Retriever:
    """Scores facts against query positions and builds each position's context (module doc)."""

    def __init__(self, model: torch.nn.Module, forward: Callable[..., Any], memory: LiveMemory) -> None:
        self.model, self.forward, self.memory = model, forward, memory
        settings = memory.settings
        self.layer = int(settings["layer"])
        self.retriever = str(settings.get("retriever", "subject"))
        if self.retriever not in RETRIEVERS:
            raise PatchError(f"edit memory retriever must be one of {', '.join(RETRIEVERS)}, got {self.retriever!r}")
        facts = memory.facts
        if self.retriever == "subject":
            keys = []
            for fact in facts:
                hidden = hidden_states(model, forward, _row(model, fact.key_ids), None, self.layer)[0]
                keys.append(hidden[min(fact.subject_end, hidden.shape[0] - 1)].cpu())
            self.keys = normalized(torch.stack(keys)) if keys else torch.zeros(0, 1)
        else:
            self.keys = normalized(embed_sequences(model, forward, [f.key_ids for f in facts], self.layer))
        self.contexts: dict[int, tuple[int, ...]] = {}
        self.classifier: Any = None
        if memory.policy == "serac":
            from kedit_vc.editors.serac.classifier import ClassifierError, classifier_by_hash

            try:
                self.classifier = classifier_by_hash(str(settings["classifier"]))
            except ClassifierError as error:
                raise PatchError(str(error)) from None
            width = int(self.classifier.params["proj"].shape[0])
            if self.keys.numel() and self.keys.shape[1] != width:
                raise PatchError(f"the SERAC classifier {self.classifier.hash[:12]} reads states of width {width}, "
                                 f"this model's are {self.keys.shape[1]}: it was trained for another model")
        if memory.policy == "ike":
            self._ike_contexts(int(settings.get("k", 8)))

    def _ike_contexts(self, k: int) -> None:
        """Each fact's IKE context: its k nearest demonstrations, then its head."""
        facts = self.memory.facts
        demos = [(owner, demo) for owner, fact in enumerate(facts) for demo in fact.demos]
        if not demos:
            self.contexts = {i: f.head_ids for i, f in enumerate(facts)}
            return
        vectors = normalized(embed_sequences(self.model, self.forward, [d.ids for _, d in demos], self.layer))
        anchor_index = {owner: j for j, (owner, d) in enumerate(demos) if d.kind == "copy"}
        for i, fact in enumerate(facts):
            anchor = vectors[anchor_index[i]] if i in anchor_index else vectors.mean(0)
            scores = vectors @ anchor
            allowed = torch.tensor([owner != i or d.kind == "copy" for owner, d in demos])
            scores = torch.where(allowed, scores, torch.full_like(scores, -float("inf")))
            order = [j for j in scores.argsort(descending=True).tolist() if bool(allowed[j])][:k]
            ids: list[int] = []
            for j in order:
                ids += demos[j][1].ids
            self.contexts[i] = tuple(ids) + fact.head_ids

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores [t, n_facts] of query positions given the query's states [t, d] at ``layer``."""
        if self.classifier is not None:
            return self.classifier.scores(hidden, self.keys.to(hidden.device))
        if self.retriever == "mean":
            return normalized(prefix_means(hidden)) @ self.keys.to(hidden.device).T
        sims = normalized(hidden) @ self.keys.to(hidden.device).T          # [t, n]
        if sims.shape[0] > 1:
            running = torch.cummax(sims[1:], dim=0).values
            sims = torch.cat([sims[:1], running], dim=0)
        return sims

    def choose(self, scores: torch.Tensor) -> list[tuple[int, ...] | None]:
        """Per position, the context ids to put in front (None: nothing), from ``scores`` [t, n]."""
        settings = self.memory.settings
        out: list[tuple[int, ...] | None] = []
        if scores.shape[1] == 0:
            return [None] * scores.shape[0]
        if self.memory.policy == "ike":
            for best in scores.argmax(dim=1).tolist():
                out.append(self.contexts[best])
            return out
        if self.memory.policy == "serac":
            return self._serac_choose(scores)
        default = 0.8
        threshold, most = float(settings.get("threshold", default)), int(settings.get("max_facts", 1))
        shots = int(settings.get("shots", 0))
        for row in scores:
            order = row.argsort(descending=True).tolist()
            hits = [j for j in order[:most] if float(row[j]) >= threshold]
            if not hits:
                out.append(None)
                continue
            ids = self._worked_examples(order[len(hits):len(hits) + shots])
            for j in reversed(hits):  # best last, nearest the query
                ids += self._copy_and_head(self.memory.facts[j])
            out.append(tuple(ids))
        return out

    def _worked_examples(self, facts: Sequence[int]) -> list[int]:
        """The copy demonstrations of ``facts`` (next-best first in ``facts``; put farthest
        first, so the nearest stands closest to the query): worked examples of a stored
        fact overriding the model, for a base model that does not take one fact alone."""
        ids: list[int] = []
        for j in reversed(facts):
            ids += next((d.ids for d in self.memory.facts[j].demos if d.kind == "copy"), ())
        return ids


    def _serac_choose(self, scores: torch.Tensor) -> list[tuple[int, ...] | None]:
        """SERAC: per position, the best-scoring fact when its scope probability reaches
        ``threshold``, preceded by the copy demonstrations of the ``shots`` next-best facts
        (worked examples of a stored fact overriding the model); otherwise nothing."""
        threshold, shots = float(self.memory.settings.get("threshold", 0.5)), int(self.memory.settings.get("shots", 0))
        out: list[tuple[int, ...] | None] = []
        for row in scores:
            order = row.argsort(descending=True).tolist()
            if float(row[order[0]]) < threshold:
                out.append(None)
                continue
            out.append(tuple(self._worked_examples(order[1:1 + shots]))
                       + self._copy_and_head(self.memory.facts[order[0]]))
        return out

    @staticmethod
    def _copy_and_head(fact: MemoryFact) -> tuple[int, ...]:
        """MemPrompt's context for one fact: its copy demonstration (one example of using a
        stored fact) and its head."""
        copy = next((d.ids for d in fact.demos if d.kind == "copy"), ())
        return tuple(copy) + fact.head_ids


def _row(model: torch.nn.Module, ids: Sequence[int]) -> torch.Tensor:
    return torch.tensor([list(ids)], device=next(model.parameters()).device)

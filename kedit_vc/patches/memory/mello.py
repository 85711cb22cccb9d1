"""MeLLo's query-time loop over the edit memory (Zhong et al. 2023, arXiv 2305.14795).

A MeLLo revision's memory changes no weight and is put in front of no query: its facts are
read by ``answer(question)``, which the attached memory installs on the model
(``MelloHandle``; ``kedit_vc.load_edited(...)`` then ``model.answer("...")``). The loop
(``run_loop``), as in the paper:

1. the model, prompted with few-shot demonstrations (``mello_prompt.PROMPT``), writes a
   subquestion and a tentative answer (greedy, until it starts ``Retrieved fact:``);
2. the stored edit nearest the subquestion is retrieved (always the top one, as the paper
   does) and written after them as ``Retrieved fact: <prompt> <new object>.``;
3. the model judges whether that fact contradicts its tentative answer and writes the
   intermediate answer, then the next subquestion ... until ``Final answer:``.

At most ``hops`` facts are retrieved; a model that has not written a final answer by then
(or writes neither a subquestion nor a final answer) is asked for one directly
(``Final answer:`` appended, one line generated) and the answer is marked ``forced``.

Retrieval uses the memory's own retriever (``live.Retriever``): the subquestion's states at
block ``layer`` of the edited model against each fact's last-subject-token state (the
paper uses Contriever sentence embeddings of the subquestion; this needs no second model).

Decoding (``ModelSession``) is greedy with a KV cache: the few-shot prompt is run once per
session and each question starts from a copy of its cache, so a question pays for its own
tokens only. Weights changed by hand after the first question need a new session
(re-attach), as for every attached patch.
"""

from __future__ import annotations

import copy
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch

from kedit_vc.models.families import decoder_stack
from kedit_vc.models.forward import _cache_keyword, unwrap
from kedit_vc.models.prompting import NO_PREFIX, encode_continuation, encode_text
from kedit_vc.patches.registry import PatchError

from .embed import hidden_states
from .live import LiveMemory, Retriever
from .mello_prompt import PROMPT, clean_answer, cut, fact_line, parse_step, question_text

#: Defaults of the settings a MeLLo patch records (``editors/mello/hparams.py`` explains them).
HOPS = 4
MAX_NEW_TOKENS = 64
FINAL_TOKENS = 24


class Session(Protocol):
    """A text continuation the loop writes into and generates from."""

    def extend(self, text: str) -> None:
        """Append ``text`` after what the session holds."""

    def generate(self, max_new_tokens: int, until: Callable[[str], int | None] = cut) -> str:
        """Greedy continuation of what the session holds, cut where ``until`` says (or after
        ``max_new_tokens`` tokens); the session itself is left as it was."""


@dataclass(frozen=True)
class Hop:
    """One retrieval: the subquestion, the model's tentative answer, the fact retrieved for it
    (and its retrieval score), and the model's judgement of it (None: not written)."""

    subquestion: str
    generated: str | None
    fact: str
    score: float
    contradicts: bool | None = None
    intermediate: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"subquestion": self.subquestion, "generated": self.generated, "fact": self.fact,
                "score": round(self.score, 4), "contradicts": self.contradicts, "intermediate": self.intermediate}


@dataclass(frozen=True)
class Answer:
    """MeLLo's answer to ``question``: ``text`` (None: the model wrote none), whether it was
    ``forced`` (asked for after the hop bound or a malformed step), the hops and the transcript
    the model wrote after the few-shot prompt."""

    question: str
    text: str | None
    forced: bool
    hops: tuple[Hop, ...]
    transcript: str
    seconds: float = 0.0
    generations: int = 0
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.text, "forced": self.forced,
                "hops": [h.to_json() for h in self.hops], "transcript": self.transcript,
                "seconds": round(self.seconds, 3), "generations": self.generations, "notes": list(self.notes)}


Retrieve = Callable[[str], "tuple[str, float] | None"]


def _first_line(text: str) -> int | None:
    end = text.find("\n")
    return end if end >= 0 else None


def run_loop(session: Session, question: str, retrieve: Retrieve, hops: int = HOPS,
             max_new_tokens: int = MAX_NEW_TOKENS) -> Answer:
    """Answer ``question`` with MeLLo's loop (module doc); ``session`` holds the few-shot prompt.

    Generations: at most ``hops + 1`` steps plus one forced final line, so the loop ends
    whatever the model writes."""
    started = time.perf_counter()
    transcript = question_text(question)
    session.extend(transcript)
    done: list[Hop] = []
    generations = 0
    notes: list[str] = []
    pending = ""
    for step_index in range(hops + 1):
        step = parse_step(session.generate(max_new_tokens))
        generations += 1
        if done and step.judged is not None:
            done[-1] = Hop(done[-1].subquestion, done[-1].generated, done[-1].fact, done[-1].score,
                           step.judged, step.intermediate)
        if step.final is not None:
            transcript += step.kept
            return Answer(question, step.final, False, tuple(done), transcript,
                          time.perf_counter() - started, generations, tuple(notes))
        pending = step.kept
        if step.subquestion is None:
            notes.append("the model wrote neither a subquestion nor a final answer")
            break
        if step_index == hops:
            notes.append(f"no final answer after {hops} retrieved facts")
            break
        found = retrieve(step.subquestion)
        if found is None:
            notes.append("the edit memory is empty")
            break
        added = step.kept + fact_line(found[0])
        session.extend(added)
        transcript += added
        pending = ""
        done.append(Hop(step.subquestion, step.generated, found[0], found[1]))
    ask = pending + ("" if not pending or pending.endswith("\n") else "\n") + "Final answer:"
    session.extend(ask)
    line = session.generate(FINAL_TOKENS, _first_line)
    generations += 1
    text = clean_answer(line) or None
    transcript += ask + line + "\n"
    return Answer(question, text, True, tuple(done), transcript, time.perf_counter() - started, generations,
                  tuple(notes))


# -- on a model ------------------------------------------------------------------------------


class ModelSession:
    """Greedy decoding on ``model`` after ``prompt`` (run once; ``reset`` goes back to it)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, prompt: str = PROMPT) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.keyword = _cache_keyword(unwrap(model))
        config = getattr(model, "generation_config", None)
        ends = getattr(config, "eos_token_id", None)
        ends = [] if ends is None else ([ends] if isinstance(ends, int) else list(ends))
        if tokenizer.eos_token_id is not None:
            ends.append(int(tokenizer.eos_token_id))
        self.ends = set(ends)
        self._prompt = self._run(encode_text(tokenizer, prompt), None)
        self.reset()

    def reset(self) -> None:
        """Back to the prompt alone (its KV cache copied, not recomputed)."""
        cache, last = self._prompt
        self.cache, self.last = copy.deepcopy(cache), last

    @torch.no_grad()
    def _run(self, ids: list[int], cache: Any) -> tuple[Any, torch.Tensor]:
        """Run ``ids`` after ``cache``: the grown cache and the last position's logits [V]."""
        device = next(self.model.parameters()).device
        out = self.model(input_ids=torch.tensor([ids], device=device), use_cache=True, logits_to_keep=1,
                         **({} if cache is None else {self.keyword: cache}))
        grown = out.cache if self.keyword == "cache" else out.past_key_values
        return grown, out.logits[0, -1].float()

    def extend(self, text: str) -> None:
        ids = encode_continuation(self.tokenizer, text)
        if ids:
            self.cache, self.last = self._run(ids, self.cache)

    def generate(self, max_new_tokens: int, until: Callable[[str], int | None] = cut) -> str:
        cache, last = copy.deepcopy(self.cache), self.last
        new: list[int] = []
        text = ""
        for _ in range(max_new_tokens):
            token = int(last.argmax())
            if token in self.ends:
                break
            new.append(token)
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            end = until(text)
            if end is not None:
                return text[:end]
            cache, last = self._run([token], cache)
        return text


class Mello:
    """MeLLo over one live memory on one model (retriever keys made on first use)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, memory: LiveMemory,
                 session: ModelSession | None = None) -> None:
        self.model, self.tokenizer, self.memory = model, tokenizer, memory
        self.forward = decoder_stack(model).forward
        self._retriever: Retriever | None = None
        self._session = session
        settings = memory.settings
        self.hops = int(settings.get("hops", HOPS))
        self.max_new_tokens = int(settings.get("max_new_tokens", MAX_NEW_TOKENS))

    @property
    def retriever(self) -> Retriever:
        if self._retriever is None:
            self._retriever = Retriever(self.model, self.forward, self.memory)
        return self._retriever

    @property
    def session(self) -> ModelSession:
        if self._session is None:
            self._session = ModelSession(self.model, self.tokenizer)
        return self._session

    def sentence(self, index: int) -> str:
        """Fact ``index`` as the sentence the model reads: its prompt and new object."""
        fact = self.memory.facts[index]
        prompt = fact.prompt[len(NO_PREFIX):] if fact.prompt.startswith(NO_PREFIX) else fact.prompt
        return f"{prompt} {fact.target_new}"

    def scores(self, text: str) -> torch.Tensor:
        """Retrieval scores [n_facts] of ``text``: the best over its positions (``Retriever.scores``)."""
        ids = torch.tensor([encode_text(self.tokenizer, text)], device=next(self.model.parameters()).device)
        hidden = hidden_states(self.model, self.forward, ids, None, self.retriever.layer)[0]
        return self.retriever.scores(hidden)[-1].cpu()

    def nearest(self, text: str) -> tuple[str, float] | None:
        """The stored fact nearest ``text`` as a sentence, with its score (None: no facts)."""
        if not self.memory.facts:
            return None
        scores = self.scores(text)
        best = int(scores.argmax())
        return self.sentence(best), float(scores[best])

    def answer(self, question: str) -> Answer:
        self.session.reset()
        return run_loop(self.session, question, self.nearest, self.hops, self.max_new_tokens)


# -- attached to a model ----------------------------------------------------------------------

_TOKENIZERS: "weakref.WeakKeyDictionary[torch.nn.Module, Any]" = weakref.WeakKeyDictionary()


def bind_tokenizer(model: torch.nn.Module, tokenizer: Any) -> None:
    """Remember ``model``'s tokenizer, so ``model.answer(question)`` needs none
    (``ops.load`` binds the store's tokenizer to every model it loads)."""
    _TOKENIZERS[model] = tokenizer


class MelloHandle:
    """A MeLLo memory attached to ``model``: installs ``model.answer(question, tokenizer=None)
    -> Answer``; ``remove()`` takes it off. Forward and generate are left alone."""

    def __init__(self, model: torch.nn.Module, memory: LiveMemory) -> None:
        self.model, self.memory = model, memory
        self._mello: Mello | None = None
        self._saved = model.__dict__.get("answer")
        model.__dict__["answer"] = self.answer

    def answer(self, question: str, tokenizer: Any = None) -> Answer:
        """MeLLo's answer to ``question`` over the live memory (module doc)."""
        tokenizer = tokenizer if tokenizer is not None else _TOKENIZERS.get(self.model)
        if tokenizer is None:
            raise PatchError("model.answer needs the model's tokenizer: pass answer(question, tokenizer) or "
                             "load the model with kedit_vc.load_edited")
        if self._mello is None or self._mello.tokenizer is not tokenizer:
            self._mello = Mello(self.model, tokenizer, self.memory)
        return self._mello.answer(question)

    def remove(self) -> None:
        if self._saved is None:
            self.model.__dict__.pop("answer", None)
        else:
            self.model.__dict__["answer"] = self._saved

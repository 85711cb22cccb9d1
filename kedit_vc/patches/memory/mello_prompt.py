"""MeLLo's few-shot prompt and the parsing of what the model writes in it (no torch).

MeLLo (Zhong et al. 2023, arXiv 2305.14795) answers a multi-hop question in a fixed line
format: ``Subquestion:``, ``Generated answer:`` (the model's tentative answer), then the
caller adds ``Retrieved fact:`` (the stored edit nearest the subquestion), the model judges
whether that fact contradicts its tentative answer (``... so the intermediate answer is: X``)
and goes on until ``Final answer: X``. The demonstrations below are ours, written in the
paper's format with other entities; like the paper's, each hop shows one retrieved fact,
sometimes an edit that applies (contradicts: its object wins) and sometimes an unrelated
one (does not contradict: the tentative answer stays).

Parsing is tolerant: a small model's lines may come with extra spaces, another case, a
trailing period, or not at all; a step that holds no subquestion and no final answer is
reported as such and the loop ends (``mello.run_loop``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Recorded in each MeLLo patch's settings: a prompt change is a new version.
PROMPT_VERSION = "kvc-mello/1"

PROMPT = """\
Question: What is the capital of the country where the Sydney Opera House is located?
Subquestion: In which country is the Sydney Opera House located?
Generated answer: The Sydney Opera House is located in Australia.
Retrieved fact: The Sydney Opera House is located in the country of Brazil.
Retrieved fact contradicts the generated answer, so the intermediate answer is: Brazil
Subquestion: What is the capital of Brazil?
Generated answer: The capital of Brazil is Brasilia.
Retrieved fact: The capital of Peru is Quito.
Retrieved fact does not contradict the generated answer, so the intermediate answer is: Brasilia
Final answer: Brasilia

Question: What is the official language of the country of citizenship of Wolfgang Amadeus Mozart?
Subquestion: What is the country of citizenship of Wolfgang Amadeus Mozart?
Generated answer: Wolfgang Amadeus Mozart is a citizen of Austria.
Retrieved fact: Ludwig van Beethoven is a citizen of Japan.
Retrieved fact does not contradict the generated answer, so the intermediate answer is: Austria
Subquestion: What is the official language of Austria?
Generated answer: The official language of Austria is German.
Retrieved fact: The official language of Austria is Spanish.
Retrieved fact contradicts the generated answer, so the intermediate answer is: Spanish
Final answer: Spanish

Question: On which continent is the country of origin of the Toyota Corolla?
Subquestion: Which country was the Toyota Corolla created in?
Generated answer: The Toyota Corolla was created in Japan.
Retrieved fact: The Toyota Corolla was created in the country of Italy.
Retrieved fact contradicts the generated answer, so the intermediate answer is: Italy
Subquestion: On which continent is Italy located?
Generated answer: Italy is located in Europe.
Retrieved fact: Chile is located in the continent of Africa.
Retrieved fact does not contradict the generated answer, so the intermediate answer is: Europe
Final answer: Europe

Question: Who is the head of state of the country where Pablo Picasso holds citizenship?
Subquestion: What is the country of citizenship of Pablo Picasso?
Generated answer: Pablo Picasso is a citizen of Spain.
Retrieved fact: Pablo Picasso is a citizen of India.
Retrieved fact contradicts the generated answer, so the intermediate answer is: India
Subquestion: Who is the head of state of India?
Generated answer: The head of state of India is Droupadi Murmu.
Retrieved fact: The head of state of Mexico is Elton John.
Retrieved fact does not contradict the generated answer, so the intermediate answer is: Droupadi Murmu
Final answer: Droupadi Murmu"""

#: Where a generation step ends: the model starts the retrieved fact (the caller writes it),
#: ends the example, or starts another question.
STOPS = ("Retrieved fact:", "\n\n", "\nQuestion:")

_LINE = re.compile(r"^\s*(subquestion|generated answer|final answer)\s*:\s*(.*?)\s*$", re.I)
_JUDGED = re.compile(r"^\s*retrieved fact\b(.*?)so the intermediate answer is\s*:?\s*(.*?)\s*$", re.I)
_FINAL_DONE = re.compile(r"final answer\s*:[^\n]*\S[^\n]*\n", re.I)


def question_text(question: str) -> str:
    """What follows the prompt for one question (the model writes the next line)."""
    return f"\n\nQuestion: {' '.join(question.split())}\n"


def fact_line(sentence: str) -> str:
    """The line the caller adds after a step: the retrieved fact, ending with a period."""
    sentence = " ".join(sentence.split()).rstrip(".")
    return f"Retrieved fact: {sentence}.\n"


def cut(text: str) -> int | None:
    """Where generated ``text`` ends (its length up to the earliest stop string or the end of
    a completed ``Final answer:`` line), or None while it goes on."""
    ends = [i for i in (text.find(stop) for stop in STOPS) if i >= 0]
    done = _FINAL_DONE.search(text)
    if done is not None:
        ends.append(done.end())
    return min(ends) if ends else None


def clean_answer(text: str) -> str:
    """An answer as written after its label: whitespace collapsed, quotes and final periods off."""
    text = " ".join(text.split())
    while True:
        trimmed = text.rstrip(".").strip().strip("\"'").strip()
        if trimmed == text:
            return text
        text = trimmed


@dataclass(frozen=True)
class Step:
    """What one generation step said: the judgement of the previous hop's fact (``judged``:
    True contradicts, False does not, None not written) and its intermediate answer, the next
    subquestion and tentative answer, the final answer, and ``kept``: the generated text up to
    the end of the last line the loop uses (what goes back into the prompt)."""

    judged: bool | None
    intermediate: str | None
    subquestion: str | None
    generated: str | None
    final: str | None
    kept: str


def parse_step(text: str) -> Step:
    """Read one generation step (the text the model wrote before a stop, see ``cut``)."""
    judged: bool | None = None
    intermediate = subquestion = generated = final = None
    kept_end = 0
    offset = 0
    for line in text.splitlines(keepends=True):
        offset += len(line)
        body = line.rstrip("\n")
        found = _JUDGED.match(body)
        if found is not None and subquestion is None:
            words = found.group(1).lower()
            judged = not ("not contradict" in words or "doesn't contradict" in words or "no contradiction" in words)
            intermediate = clean_answer(found.group(2)) or None
            kept_end = offset
            continue
        labelled = _LINE.match(body)
        if labelled is None:
            continue
        label, value = labelled.group(1).lower(), clean_answer(labelled.group(2))
        if label == "final answer" and value:
            final = value
            kept_end = offset
            break
        if label == "subquestion" and value:
            subquestion, generated = value, None
            kept_end = offset
        elif label == "generated answer" and subquestion is not None and generated is None:
            generated = value
            kept_end = offset
    kept = text[:kept_end]
    if kept and not kept.endswith("\n"):
        kept += "\n"
    return Step(judged, intermediate, subquestion, generated, final, kept)

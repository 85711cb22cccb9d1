"""Derived edits: what follows from each edit, by the spec's rules (torch-free).

For each edit of a relation with rules (``implies`` in the relation or ``rules for``):
- ``implies NAME "{subject} ..." from "{object} ..."`` (compose): the same subject under
  the implied prompt. Its new object is the spec's own fact when the spec states it (an
  explicit edit whose subject is the new object, of relation NAME or worded as the
  ``from`` prompt), else the model's confident answer to the ``from`` prompt with
  ``{object}`` = the new object (``Oracle``; see ``CONFIDENCE``).
- ``implies reverse "... {object} ..."``: a fact about the new object whose answer is
  the subject.
- ``alias "..."`` in an edit body: the same fact with the alias as subject.
A derived edit's old object is the model's current answer to its own prompt. Derivation
reads edits and rules only, never probes: portability probes stay the measuring stick.
A derived edit is dropped, with a note in ``Plan.notes``, when it restates or
contradicts an explicit edit (same subject and prompt), when the model is not
confident, or when the model already gives its new object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from kedit_vc.lang.ids import edit_id
from kedit_vc.lang.ir import Edit, Span
from kedit_vc.lang.loader import Program
from kedit_vc.lang.placeholders import fill, to_rome

from .plan import Derivation, EditorCall, EditRequest, Plan
from .plan import Probe as PlanProbe

OBJECT = "{object}"


@dataclass(frozen=True)
class Confidence:
    """When a model's answer counts as knowledge: the first answer token's probability is
    at least ``min_probability`` and the answer, cut at the first newline or punctuation,
    is a short phrase of 1 to ``max_words`` words."""

    min_probability: float = 0.3
    max_words: int = 3

    def accepts(self, answer: "Answer") -> bool:
        words = answer.text.split()
        return answer.probability >= self.min_probability and 1 <= len(words) <= self.max_words

    def describe(self) -> str:
        return (f"first answer token probability >= {self.min_probability:g} and a phrase of "
                f"1-{self.max_words} words")


CONFIDENCE = Confidence()


@dataclass(frozen=True)
class Answer:
    """A model's greedy answer (cut to a phrase) and its first token's probability."""

    text: str
    probability: float


class Oracle(Protocol):
    """The model's own knowledge (``kedit_vc.ops.derive.ModelOracle`` is the real one)."""

    def answers(self, prompts: Sequence[str]) -> list[Answer]:
        ...


_CUT = re.compile(r"[\n.,;:!?()\"]")


def phrase(text: str) -> str:
    """A greedy continuation cut to its first phrase: ``" Italy. It is"`` -> ``"Italy"``."""
    return _CUT.split(text, maxsplit=1)[0].strip()


@dataclass
class _Candidate:
    parent: EditRequest
    rule: str
    kind: str
    subject: str
    template: str  # with {subject}
    new: str | None
    question: str | None  # the prompt to ask the model for ``new`` (None: known)
    evidence: dict[str, Any]
    old: str | None = None


def _where(span: Span | None) -> str:
    return f"{span.file}:{span.line}" if span is not None else "the spec"


def _template(program: Program, edit: Edit) -> str:
    if edit.prompt is not None:
        return edit.prompt
    return program.relations[edit.relation or ""].template


def has_rules(program: Program) -> bool:
    """Whether any edit of ``program`` has a rule or an alias to derive from."""
    rules = program.rules
    return any(s.edit.aliases or (s.edit.relation in rules) for s in program.edits)


def _candidates(program: Program) -> list[_Candidate]:
    rules = program.rules
    explicit = [s.edit for s in program.edits]
    out: list[_Candidate] = []
    for edit in explicit:
        template = _template(program, edit)
        parent = edit_id(edit.subject, template, edit.new)
        request = EditRequest(parent, edit.subject, to_rome(template), edit.new, edit.old)
        for also in edit.aliases:
            out.append(_Candidate(request, f"alias of {edit.subject}", "alias", also.name, template, edit.new,
                                  None, {"source": "alias", "at": _where(also.span)}, edit.old))
        for rule in rules.get(edit.relation or "", ()):
            if rule.kind == "reverse":
                name = f"{edit.relation} implies reverse"
                out.append(_Candidate(request, name, "reverse", edit.new, rule.template.replace(OBJECT, "{subject}"),
                                      edit.subject, None, {"source": "rule", "at": _where(rule.span)}))
                continue
            name = f"{edit.relation} implies {rule.name}"
            source = rule.source or ""
            stated = next((e for e in explicit if e.subject == edit.new and (
                e.relation == rule.name or _template(program, e) == source.replace(OBJECT, "{subject}"))), None)
            if stated is not None:
                out.append(_Candidate(request, name, "compose", edit.subject, rule.template, stated.new, None,
                                      {"source": "spec", "at": _where(stated.span)}))
            else:
                out.append(_Candidate(request, name, "compose", edit.subject, rule.template, None,
                                      source.replace(OBJECT, edit.new), {"source": "model"}))
    return out


def derive(program: Program, plan: Plan, oracle: Oracle | None,
           confidence: Confidence = CONFIDENCE) -> Plan:
    """``plan`` (lowered from ``program``) with the derived requests placed after their parents.

    Without an oracle, only what the spec itself states is derived (aliases, reverse
    facts and composed facts the spec writes); the rest is noted as needing the model.
    """
    candidates = _candidates(program)
    notes: list[str] = []
    questions = [c.question for c in candidates if c.question is not None]
    olds = [fill(c.template, c.subject) for c in candidates if c.old is None]
    if oracle is not None and (questions or olds):
        answers = iter(oracle.answers(questions + olds))
        asked = {id(c): next(answers) for c in candidates if c.question is not None}
        current = {id(c): next(answers) for c in candidates if c.old is None}
    else:
        asked, current = {}, {}
    explicit = {(s.edit.subject, _template(program, s.edit)): s.edit for s in program.edits}
    explicit_rel = {(s.edit.subject, s.edit.relation): s.edit for s in program.edits if s.edit.relation}
    kept: dict[tuple[str, str], EditRequest] = {}
    by_parent: dict[str, list[EditRequest]] = {}
    for c in candidates:
        label = f"{c.rule} for {c.parent.subject!r} -> {c.parent.target_new!r}"
        if c.question is not None:
            if oracle is None:
                notes.append(f"skipped {label}: needs the model to answer {c.question!r}")
                continue
            answer = asked[id(c)]
            c.evidence.update(prompt=c.question, answer=answer.text, probability=round(answer.probability, 4))
            if not confidence.accepts(answer):
                notes.append(f"dropped {label}: the model is not confident ({c.question!r} -> "
                             f"{answer.text!r}, p={answer.probability:.2f}; needs {confidence.describe()})")
                continue
            c.new = answer.text
        assert c.new is not None
        if c.old is None and id(c) in current:
            c.old = current[id(c)].text or None
        key = (c.subject, c.template)
        rel = c.rule.rsplit(" implies ", 1)[-1] if c.kind == "compose" else None
        stated = explicit.get(key) or (explicit_rel.get((c.subject, rel)) if rel else None)
        if stated is not None:
            if stated.new == c.new:
                notes.append(f"dropped {label}: {c.subject!r} -> {c.new!r} is already an explicit edit "
                             f"at {_where(stated.span)}")
            else:
                notes.append(f"dropped {label}: {c.subject!r} -> {c.new!r} contradicts the explicit edit "
                             f"-> {stated.new!r} at {_where(stated.span)}")
            continue
        if key in kept:
            other = kept[key]
            verb = "duplicates" if other.target_new == c.new else "contradicts"
            notes.append(f"dropped {label}: {c.subject!r} -> {c.new!r} {verb} the derived edit {other.edit_id}")
            continue
        if c.old is not None and c.old == c.new:
            notes.append(f"dropped {label}: the model already answers {fill(c.template, c.subject)!r} "
                         f"with {c.new!r}")
            continue
        prompt = fill(c.template, c.subject)
        request = EditRequest(
            edit_id=edit_id(c.subject, c.template, c.new),
            subject=c.subject,
            prompt=to_rome(c.template),
            target_new=c.new,
            target_true=c.old,
            probes=(PlanProbe("rewrite", prompt, c.new, c.old),),
            derived=Derivation(c.parent.edit_id, c.rule, c.kind, c.evidence),
        )
        kept[key] = request
        by_parent.setdefault(c.parent.edit_id, []).append(request)
    calls = []
    for call in plan.calls:
        requests: list[EditRequest] = []
        for request in call.requests:
            requests.append(request)
            requests.extend(by_parent.pop(request.edit_id, ()))
        calls.append(EditorCall(call.method, call.hparams, tuple(requests)))
    return Plan(tuple(calls), plan.model, plan.expectations, plan.notes + tuple(notes))

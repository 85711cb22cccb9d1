"""Semantic checks over a loaded ``Program``; every problem becomes a ``Diagnostic``.

Checks never stop at the first problem, so one run of ``kvc compile`` lists them all.
"""

from __future__ import annotations

import math
import re
from typing import Callable

from .diagnostics import Diagnostic, did_you_mean
from .hparam_check import check_method
from .ids import edit_id
from .ir import (
    DeriveSetting,
    Edit,
    Expectation,
    Implication,
    Include,
    MethodChoice,
    Model,
    Probe,
    Relation,
    Rules,
    Span,
    Spec,
)
from .loader import Program
from .metrics import METRICS
from .placeholders import SUBJECT, placeholders

Report = Callable[[Diagnostic], None]

#: Words that cannot name a relation (``edit "S" prompt ...`` means an inline prompt).
RESERVED_RELATION_NAMES = frozenset({"prompt"})
#: Dataset relation ids (Wikidata's P131...): a rule library may key rules by them
#: without declaring them, since the importer of each spec declares the ids it uses.
DATASET_ID = re.compile(r"^P[0-9]+$")
DERIVE_VALUES = ("true", "false")


def _where(span: Span | None) -> str:
    return f"{span.file}:{span.line}" if span is not None else "elsewhere"


def _offset_span(span: Span | None, offset: int, width: int) -> Span | None:
    """The span of characters inside a one-line string token (best effort)."""
    if span is None or span.line != span.end_line:
        return span
    column = span.column + 1 + offset
    if column + width > span.end_column:
        return span
    return Span(span.file, span.line, column, span.line, column + width)


class _Checker:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.diagnostics: list[Diagnostic] = []

    def report(self, diagnostic: Diagnostic) -> None:
        self.diagnostics.append(diagnostic)

    def error(self, span: Span | None, message: str) -> None:
        self.diagnostics.append(Diagnostic(span, message))

    # -- strings -------------------------------------------------------------------
    def text(self, value: str | None, span: Span | None, what: str, *, subject: str = "allowed",
             answer: bool = False) -> bool:
        """Non-empty, known placeholders; ``subject`` is allowed | forbidden | once."""
        if value is None:
            return True
        if not value.strip():
            self.error(span, f"{what} is empty")
            return False
        if answer and value != value.strip():
            self.error(span, f"{what} {value!r} has surrounding spaces; scorers add the leading space themselves")
        ok = True
        count = 0
        for name, offset in placeholders(value):
            where = _offset_span(span, offset, len(name) + 2)
            if name == "subject":
                count += 1
                if subject == "forbidden" and count == 1:
                    self.error(where, f"{what} cannot contain {SUBJECT}")
                    ok = False
            elif name == "":
                self.error(where, f"empty placeholder '{{}}' in {what}; write {SUBJECT}")
                ok = False
            else:
                self.error(where, f"unknown placeholder '{{{name}}}' in {what}"
                           f"{did_you_mean(name, ['subject']) or ' (the only placeholder is {subject})'}")
                ok = False
        if subject == "once" and count != 1:
            many = "more than once" if count > 1 else "no {subject}"
            self.error(span, f"{what} must contain {SUBJECT} exactly once (it has {many})")
            ok = False
        return ok

    # -- statements ----------------------------------------------------------------
    def check(self) -> list[Diagnostic]:
        for spec in self.program.files:
            self.file_level(spec)
        self.models()
        self.expectations()
        self.relations()
        self.rules()
        self.edits()
        return self.diagnostics

    # -- rules ---------------------------------------------------------------------
    def rule_text(self, value: str, span: Span | None, what: str, placeholder: str) -> None:
        """``value`` holds ``{placeholder}`` exactly once and no other placeholder."""
        if not value.strip():
            self.error(span, f"{what} is empty")
            return
        count = 0
        for name, offset in placeholders(value):
            if name == placeholder:
                count += 1
                continue
            where = _offset_span(span, offset, len(name) + 2)
            self.error(where, f"'{{{name}}}' cannot appear in {what} (it takes {{{placeholder}}})"
                       f"{did_you_mean(name, [placeholder])}")
        if count != 1:
            self.error(span, f"{what} must contain {{{placeholder}}} exactly once (it has {count})")

    def implication(self, rule: Implication) -> None:
        if rule.kind == "reverse":
            self.rule_text(rule.template, rule.at("template"), "a reverse rule's prompt", "object")
            return
        if rule.name in RESERVED_RELATION_NAMES:
            self.error(rule.at("name"), f"'{rule.name}' is a reserved word; choose another relation name")
        self.rule_text(rule.template, rule.at("template"), "an implied relation's prompt", "subject")
        self.rule_text(rule.source or "", rule.at("source"), "a rule's 'from' prompt", "object")

    def rules(self) -> None:
        """Rule texts, ``rules for`` targets and ``derive`` values (an included file's
        ``derive`` is checked but only the root file's decides)."""
        relations = self.program.relations
        for spec in self.program.files:
            for item in spec.items:
                if isinstance(item, DeriveSetting):
                    if item.value not in DERIVE_VALUES:
                        self.error(item.at("value"), f"derive takes true or false, not '{item.value}'"
                                   f"{did_you_mean(item.value, DERIVE_VALUES)}")
                elif isinstance(item, Relation):
                    for rule in item.implications:
                        self.implication(rule)
                elif isinstance(item, Rules):
                    if item.relation not in relations and not DATASET_ID.match(item.relation):
                        hint = (did_you_mean(item.relation, relations)
                                or " (declare it, or key the rules by a dataset id such as P131)")
                        self.error(item.at("relation"), f"rules for unknown relation '{item.relation}'{hint}")
                    for rule in item.implications:
                        self.implication(rule)

    def file_level(self, spec: Spec) -> None:
        firsts: dict[type, object] = {}
        for item in spec.items:
            if isinstance(item, (Model, MethodChoice)):
                kind = "model" if isinstance(item, Model) else "method"
                first = firsts.setdefault(type(item), item)
                if first is not item:
                    self.error(item.span, f"a second '{kind}' statement in this file "
                               f"(the first is at {_where(first.span)})")  # type: ignore[attr-defined]
            if isinstance(item, MethodChoice):
                check_method(item, self.report)
            elif isinstance(item, Model):
                self.text(item.name, item.at("name"), "the model name")
            elif isinstance(item, Include):
                self.text(item.path, item.at("path"), "the include path")

    def models(self) -> None:
        models = self.program.models
        for model in models[1:]:
            if model.name != models[0].name and model.span and models[0].span \
                    and model.span.file != models[0].span.file:
                self.error(model.at("name"), f"model '{model.name}' disagrees with model "
                           f"'{models[0].name}' at {_where(models[0].span)}")

    def expectations(self) -> None:
        seen: dict[tuple[str, str], Expectation] = {}
        for expectation in self.program.expectations:
            if expectation.metric not in METRICS:
                self.error(expectation.at("metric"), f"unknown metric '{expectation.metric}'"
                           f"{did_you_mean(expectation.metric, METRICS) or ' (known: ' + ', '.join(METRICS) + ')'}")
                continue
            low, high = METRICS[expectation.metric]
            value = expectation.threshold
            if not math.isfinite(value) or not low <= value <= high:
                bounds = f"[{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
                self.error(expectation.at("threshold"), f"threshold {value:g} for {expectation.metric} "
                           f"is outside {bounds}")
            key = (expectation.metric, expectation.op)
            if key in seen:
                self.error(expectation.span, f"'expect {expectation.metric} {expectation.op}' is already "
                           f"given at {_where(seen[key].span)}")
            else:
                seen[key] = expectation

    def relations(self) -> None:
        seen: dict[str, Relation] = {}
        for spec in self.program.files:
            for relation in spec.relations:
                if relation.name in seen:
                    self.error(relation.at("name"), f"relation '{relation.name}' is already declared at "
                               f"{_where(seen[relation.name].span)}")
                    continue
                seen[relation.name] = relation
                if relation.name in RESERVED_RELATION_NAMES:
                    self.error(relation.at("name"), f"'{relation.name}' is a reserved word; "
                               "choose another relation name")
                self.text(relation.template, relation.at("template"), "a relation template", subject="once")
                for paraphrase in relation.paraphrases:
                    span = paraphrase.at("text")
                    if self.text(paraphrase.text, span, "a relation paraphrase") \
                            and SUBJECT not in paraphrase.text:
                        self.error(span, f"a relation paraphrase must contain {SUBJECT} "
                                   "(it is used for every edit of the relation)")

    def template_of(self, edit: Edit) -> str | None:
        if edit.prompt is not None:
            return edit.prompt
        relation = self.program.relations.get(edit.relation or "")
        return relation.template if relation is not None else None

    def edits(self) -> None:
        relations = self.program.relations
        by_fact: dict[tuple[str, str], Edit] = {}
        for scoped in self.program.edits:
            edit = scoped.edit
            self.text(edit.subject, edit.at("subject"), "the subject", subject="forbidden")
            self.text(edit.new, edit.at("new"), "the new object", answer=True, subject="forbidden")
            self.text(edit.old, edit.at("old"), "the old object", answer=True, subject="forbidden")
            if edit.old is not None and edit.old == edit.new:
                self.error(edit.at("new"), f"the new object is the old one ('{edit.new}')")
            if edit.relation is not None and edit.relation not in relations:
                self.error(edit.at("relation"), f"unknown relation '{edit.relation}'"
                           f"{did_you_mean(edit.relation, relations)}")
            if edit.prompt is not None:
                self.text(edit.prompt, edit.at("target"), "the edit prompt", subject="once")
            for method in edit.methods:
                check_method(method, self.report)
            for extra in edit.methods[1:]:
                self.error(extra.span, "an edit takes one 'method' (the first is at "
                           f"{_where(edit.methods[0].span)})")
            for probe in edit.probes:
                self.probe(edit, probe)
            for also in edit.aliases:
                if self.text(also.name, also.at("name"), "an alias", subject="forbidden") \
                        and also.name == edit.subject:
                    self.error(also.at("name"), f"an alias must differ from the subject '{edit.subject}'")
            template = self.template_of(edit)
            if template is None or not edit.subject.strip():
                continue
            key = (edit.subject, template)
            first = by_fact.setdefault(key, edit)
            if first is edit:
                continue
            target = edit.relation or "its prompt"
            if first.new != edit.new:
                self.error(edit.at("new"), f"conflicting edit: '{edit.subject}' {target} is already changed "
                           f"to '{first.new}' at {_where(first.span)}")
            else:
                self.error(edit.span, f"duplicate edit {edit_id(edit.subject, template, edit.new)}: the same "
                           f"change is already written at {_where(first.span)}")

    def probe(self, edit: Edit, probe: Probe) -> None:
        what = f"a {probe.kind}" if probe.kind[0] not in "aeiou" else f"an {probe.kind}"
        span = probe.at("text")
        if probe.is_subject:
            if self.text(probe.text, span, f"{what}'s subject") and SUBJECT in probe.text:
                self.error(span, f"{what} names another subject; it cannot contain {SUBJECT}")
            elif probe.text == edit.subject and probe.kind != "alias":
                self.error(span, f"{what} must name another subject than '{edit.subject}' "
                           "(use keep for the edited subject)")
        elif probe.kind in ("neighbour", "attribute"):
            if self.text(probe.text, span, f"{what} prompt") and SUBJECT in probe.text:
                self.error(span, f"{what} prompt is about another subject; it cannot use {SUBJECT} "
                           "(use keep for the edited subject)")
        else:
            self.text(probe.text, span, f"{what} prompt")
        self.text(probe.expected, probe.at("expected"), "the expected answer", answer=True,
                  subject="forbidden")
        self.text(probe.foil, probe.at("foil"), "the 'not' answer", answer=True, subject="forbidden")
        self.text(probe.group, probe.at("group"), "the group name", subject="forbidden")


def check_program(program: Program) -> list[Diagnostic]:
    """Every semantic problem of ``program`` (syntax errors are found while loading)."""
    return _Checker(program).check()

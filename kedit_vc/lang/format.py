"""The canonical layout of a spec: ``kvc fmt``.

Layout only: statements keep their written order, strings are re-quoted, blocks are
indented by four spaces, and comments stay with the statement they were written
before or beside. ``parse(format(spec)) == spec`` and ``format`` is idempotent.
"""

from __future__ import annotations

import math
from typing import Iterable

from .ir import (
    Also,
    Comment,
    DeriveSetting,
    Edit,
    Expectation,
    Implication,
    Include,
    Item,
    ListValue,
    MethodChoice,
    Model,
    Param,
    Portability,
    Probe,
    Range,
    Relation,
    Rules,
    Span,
    Spec,
    Value,
)
from .strings import quote

INDENT = "    "


def format_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "-1e999" if value < 0 else "1e999"
        return repr(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, Range):
        return f"{value.low}..{value.high}"
    if isinstance(value, ListValue):
        return "[" + ", ".join(format_value(v) for v in value.items) + "]"
    return format_params(value.params) if value.params else "{}"


def format_params(params: Iterable[Param]) -> str:
    return "{ " + ", ".join(f"{p.name} = {format_value(p.value)}" for p in params) + " }"


def format_method(method: MethodChoice) -> str:
    if not method.params:
        return f"method {method.name}"
    return f"method {method.name} {format_params(method.params)}"


def format_probe(probe: Probe) -> str:
    keyword = probe.kind
    if probe.kind == "paraphrase":
        return f"paraphrase {quote(probe.text)}"
    target = quote(probe.text)
    if probe.kind in ("neighbour", "attribute", "alias") and not probe.is_subject:
        target = f"prompt {target}"
    line = f"{keyword} {target} => {quote(probe.expected or '')}"
    if probe.foil is not None:
        line += f" not {quote(probe.foil)}"
    if probe.group is not None:
        line += f" group {quote(probe.group)}"
    return line


def format_implication(rule: Implication) -> str:
    if rule.kind == "reverse":
        return f"implies reverse {quote(rule.template)}"
    return f"implies {rule.name} {quote(rule.template)} from {quote(rule.source or '')}"


def edit_header(edit: Edit) -> str:
    if edit.prompt is None:
        target = edit.relation or ""
    else:
        target = f"{edit.relation + ' ' if edit.relation is not None else ''}prompt {quote(edit.prompt)}"
    if edit.old is not None:
        return f"edit {quote(edit.subject)} {target}: {quote(edit.old)} -> {quote(edit.new)}"
    return f"edit {quote(edit.subject)} {target} -> {quote(edit.new)}"


class _Writer:
    """Accumulates lines and hands each comment to the statement it belongs to."""

    def __init__(self, comments: Iterable[Comment]) -> None:
        self.comments = sorted(comments, key=lambda c: (c.line, c.column))
        self.next = 0
        self.lines: list[str] = []

    def _take(self, before: int) -> list[Comment]:
        taken = []
        while self.next < len(self.comments) and self.comments[self.next].line < before:
            taken.append(self.comments[self.next])
            self.next += 1
        return taken

    def leading(self, span: Span | None, depth: int) -> None:
        if span is not None:
            for comment in self._take(span.line):
                self.comment(comment, depth)

    def comment(self, comment: Comment, depth: int) -> None:
        if comment.blank_before and self.lines and self.lines[-1] != "":
            self.lines.append("")
        self.lines.append(INDENT * depth + comment.text)

    def line(self, text: str, depth: int, span: Span | None, last_line: int | None = None) -> None:
        """One output line for source lines ``span.line..last_line``, with their comments."""
        self.leading(span, depth)
        trailing = ""
        if span is not None:
            inside = self._take((last_line or span.line) + 1)
            for comment in inside[:-1]:
                self.comment(comment, depth)
            if inside:
                trailing = "  " + inside[-1].text
        self.lines.append(INDENT * depth + text + trailing)

    def close(self, span: Span | None, depth: int) -> None:
        """The ``}`` of a block: comments above it stay inside the block."""
        if span is not None:
            for comment in self._take(span.end_line):
                self.comment(comment, depth + 1)
        self.line("}", depth, _at(span, "end"))

    def rest(self) -> None:
        for comment in self._take(2**62):
            self.comment(comment, 0)


def _at(span: Span | None, where: str) -> Span | None:
    if span is None:
        return None
    line = span.end_line if where == "end" else span.line
    return Span(span.file, line, 1, line, 1)


def _one_line(item: Item | Probe | Implication | Also) -> int | None:
    return item.span.end_line if item.span is not None else None


def _write_body_item(writer: _Writer, item: Probe | Portability | MethodChoice | Also, depth: int) -> None:
    if isinstance(item, Also):
        writer.line(f"alias {quote(item.name)}", depth, item.span, _one_line(item))
    elif isinstance(item, Probe):
        writer.line(format_probe(item), depth, item.span, _one_line(item))
    elif isinstance(item, MethodChoice):
        writer.line(format_method(item), depth, item.span, _one_line(item))
    else:
        writer.line("portability {", depth, item.span)
        for probe in item.probes:
            writer.line(format_probe(probe), depth + 1, probe.span, _one_line(probe))
        writer.close(item.span, depth)


def _write_item(writer: _Writer, item: Item) -> None:
    if isinstance(item, Edit):
        if not item.body:
            writer.line(edit_header(item), 0, item.span, _one_line(item))
            return
        writer.line(edit_header(item) + " {", 0, item.span)
        for child in item.body:
            _write_body_item(writer, child, 1)
        writer.close(item.span, 0)
    elif isinstance(item, Relation):
        head = f"relation {item.name} {quote(item.template)}"
        if not item.paraphrases and not item.implications:
            writer.line(head, 0, item.span, _one_line(item))
            return
        writer.line(head + " {", 0, item.span)
        for probe in item.paraphrases:
            writer.line(format_probe(probe), 1, probe.span, _one_line(probe))
        for rule in item.implications:
            writer.line(format_implication(rule), 1, rule.span, _one_line(rule))
        writer.close(item.span, 0)
    elif isinstance(item, Rules):
        writer.line(f"rules for {item.relation} {{", 0, item.span)
        for rule in item.implications:
            writer.line(format_implication(rule), 1, rule.span, _one_line(rule))
        writer.close(item.span, 0)
    elif isinstance(item, DeriveSetting):
        writer.line(f"derive = {item.value}", 0, item.span, _one_line(item))
    elif isinstance(item, Model):
        writer.line(f"model {quote(item.name)}", 0, item.span, _one_line(item))
    elif isinstance(item, MethodChoice):
        writer.line(format_method(item), 0, item.span, _one_line(item))
    elif isinstance(item, Expectation):
        line = f"expect {item.metric} {item.op} {format_value(item.threshold)}"
        writer.line(line, 0, item.span, _one_line(item))
    elif isinstance(item, Include):
        writer.line(f"include {quote(item.path)}", 0, item.span, _one_line(item))


def _group(item: Item) -> str:
    """Items of the same group sit on adjacent lines; groups are set apart by a blank line."""
    if isinstance(item, Edit):
        return "edit" if not item.body else f"block-{id(item)}"
    if isinstance(item, (Relation, Rules)):
        return f"block-{id(item)}"
    return "header"


def format_spec(spec: Spec) -> str:
    """The canonical text of ``spec`` (ends with one newline; empty spec -> comments only)."""
    writer = _Writer(spec.comments)
    previous: str | None = None
    for item in spec.items:
        group = _group(item)
        if previous is not None and group != previous:
            writer.lines.append("")
        previous = group
        _write_item(writer, item)
    writer.rest()
    return "\n".join(writer.lines) + "\n" if writer.lines else ""


def format_items(items: Iterable[Item]) -> str:
    """Text for IR built in code (importers): the same layout, no comments."""
    return format_spec(Spec(tuple(items)))

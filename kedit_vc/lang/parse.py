"""Text -> IR for one file: the LALR parser with the IR builder run inside it.

The builder runs as lark's internal transformer (no intermediate tree), which keeps
10,000-edit specs fast. Lark gives no ``meta`` to internal transformers, so keywords
and braces are named terminals and every node takes its span from its tokens.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedInput, VisitError

from .diagnostics import Diagnostic, SpecError
from .grammar import grammar_text
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
    MapValue,
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
)
from .strings import EscapeError, unquote


class _Value:
    """A value with its span, unwrapped by the rule that owns it."""

    __slots__ = ("value", "span")

    def __init__(self, value: Any, span: Span) -> None:
        self.value = value
        self.span = span


def _start(token: Token) -> tuple[int, int]:
    """Line and column where ``token`` starts (lark's lexer positions every token it makes)."""
    assert token.line is not None and token.column is not None, "a token without a position"
    return token.line, token.column


def _end(token: Token) -> tuple[int, int]:
    """Line and column just after ``token``."""
    assert token.end_line is not None and token.end_column is not None, "a token without a position"
    return token.end_line, token.end_column


class _Builder(Transformer):
    """Builds IR nodes bottom-up; per-parse state lives in ``file``/``diagnostics``."""

    def __init__(self) -> None:
        super().__init__()
        self.file = "<spec>"
        self.diagnostics: list[Diagnostic] = []
        self.comments: list[Comment] = []

    # -- helpers -------------------------------------------------------------------
    def _span(self, first: Token | Span, last: Token | Span | None = None) -> Span:
        last = first if last is None else last
        line, column = (first.line, first.column) if isinstance(first, Span) else _start(first)
        end_line, end_column = (last.end_line, last.end_column) if isinstance(last, Span) else _end(last)
        return Span(self.file, line, column, end_line, end_column)

    def _str(self, token: Token) -> str:
        try:
            return unquote(token.value)
        except EscapeError as error:
            line, start = _start(token)
            column = start + error.offset
            span = Span(self.file, line, column, line, column + 2)
            self.diagnostics.append(Diagnostic(span, str(error)))
            return token.value[1:-1]

    # -- values ----------------------------------------------------------------------
    def number(self, children: list[Token]) -> _Value:
        (token,) = children
        value = int(token.value) if token.type == "INT" else float(token.value)
        return _Value(value, self._span(token))

    def string(self, children: list[Token]) -> _Value:
        (token,) = children
        return _Value(self._str(token), self._span(token))

    def boolean(self, children: list[Token]) -> _Value:
        (token,) = children
        return _Value(token.type == "TRUE", self._span(token))

    def range(self, children: list[Token]) -> _Value:
        low, high = children
        return _Value(Range(int(low.value), int(high.value)), self._span(low, high))

    def list_value(self, children: list[Any]) -> _Value:
        items = tuple(c.value for c in children[1:-1] if c is not None)
        return _Value(ListValue(items), self._span(children[0], children[-1]))

    def params(self, children: list[Any]) -> _Value:
        return _Value(MapValue(tuple(children[1:-1])), self._span(children[0], children[-1]))

    def param(self, children: list[Any]) -> Param:
        name, value = children
        span = self._span(name, value.span)
        return Param(name.value, value.value, span, {"name": self._span(name), "value": value.span})

    # -- top-level statements --------------------------------------------------------
    def start(self, children: list[Any]) -> list[Any]:
        return children

    def model(self, children: list[Token]) -> Model:
        keyword, name = children
        return Model(self._str(name), self._span(keyword, name), {"name": self._span(name)})

    def include(self, children: list[Token]) -> Include:
        keyword, path = children
        return Include(self._str(path), self._span(keyword, path), {"path": self._span(path)})

    def expect(self, children: list[Any]) -> Expectation:
        keyword, metric, op, number = children
        return Expectation(
            metric.value, op.value, number.value, self._span(keyword, number.span),
            {"metric": self._span(metric), "op": self._span(op), "threshold": number.span},
        )

    def method(self, children: list[Any]) -> MethodChoice:
        keyword, name = children[0], children[1]
        block = children[2] if len(children) > 2 else None
        end = block.span if block is not None else name
        params = block.value.params if block is not None else ()
        return MethodChoice(name.value, params, self._span(keyword, end), {"name": self._span(name)})

    def relation(self, children: list[Any]) -> Relation:
        keyword, name, template = children[:3]
        body, end = children[3] if len(children) > 3 else ((), template)
        paraphrases = tuple(b for b in body if isinstance(b, Probe))
        implications = tuple(b for b in body if isinstance(b, Implication))
        return Relation(
            name.value, self._str(template), paraphrases, implications, self._span(keyword, end),
            {"name": self._span(name), "template": self._span(template)},
        )

    def relation_body(self, children: list[Any]) -> tuple[list[Any], Token]:
        return children[1:-1], children[-1]

    def implies(self, children: list[Token]) -> Implication:
        keyword = children[0]
        if children[1].type == "REVERSE":
            template = children[2]
            return Implication("reverse", self._str(template), span=self._span(keyword, template),
                               parts={"template": self._span(template), "kind": self._span(children[1])})
        name, template, source = children[1], children[2], children[4]
        return Implication(
            "compose", self._str(template), name.value, self._str(source), self._span(keyword, source),
            {"name": self._span(name), "template": self._span(template), "source": self._span(source)},
        )

    def rules(self, children: list[Any]) -> Rules:
        keyword, name = children[0], children[2]
        return Rules(name.value, tuple(children[4:-1]), self._span(keyword, children[-1]),
                     {"relation": self._span(name)})

    def derive(self, children: list[Token]) -> DeriveSetting:
        keyword, value = children
        return DeriveSetting(value.value, self._span(keyword, value), {"value": self._span(value)})

    def also(self, children: list[Token]) -> Also:
        keyword, name = children
        return Also(self._str(name), self._span(keyword, name), {"name": self._span(name)})

    # -- edits -----------------------------------------------------------------------
    def edit(self, children: list[Any]) -> Edit:
        keyword, subject, target, change = children[:4]
        body, end = children[4] if len(children) > 4 else ((), change[-1])
        relation, prompt, target_parts = target
        old_token, new_token = change if len(change) == 2 else (None, change[0])
        parts = {"subject": self._span(subject), **target_parts, "new": self._span(new_token)}
        if old_token is not None:
            parts["old"] = self._span(old_token)
        return Edit(
            subject=self._str(subject),
            relation=relation,
            prompt=prompt,
            old=self._str(old_token) if old_token is not None else None,
            new=self._str(new_token),
            body=tuple(body),
            span=self._span(keyword, end),
            parts=parts,
        )

    def edit_target(self, children: list[Token]) -> tuple[str | None, str | None, dict[str, Span]]:
        """(relation, prompt, spans): ``target`` is the prompt's span when one is written."""
        relation = children[0].value if children[0].type == "NAME" else None
        if len(children) == 1:
            span = self._span(children[0])
            return relation, None, {"target": span, "relation": span} if relation else {"target": span}
        prompt = children[-1]
        parts = {"target": self._span(prompt)}
        if relation is not None:
            parts["relation"] = self._span(children[0])
        return relation, self._str(prompt), parts

    def change(self, children: list[Token]) -> list[Token]:
        return children

    def edit_body(self, children: list[Any]) -> tuple[list[Any], Token]:
        return children[1:-1], children[-1]

    def other(self, children: list[Token]) -> tuple[str, bool, Span]:
        token = children[-1]
        return self._str(token), len(children) == 1, self._span(token)

    def answer(self, children: list[Token]) -> tuple[str, str | None, dict[str, Span], Span]:
        parts = {"expected": self._span(children[0])}
        foil = None
        if len(children) > 1:
            foil = self._str(children[1])
            parts["foil"] = self._span(children[1])
        return self._str(children[0]), foil, parts, self._span(children[-1])

    def _probe(self, kind: str, keyword: Token, text: tuple[str, bool, Span], answer: Any,
               group: Token | None = None) -> Probe:
        value, is_subject, text_span = text
        parts = {"text": text_span}
        expected = foil = None
        end: Span | Token = text_span
        if answer is not None:
            expected, foil, answer_parts, end = answer
            parts.update(answer_parts)
        group_value = None
        if group is not None:
            group_value = self._str(group)
            parts["group"] = self._span(group)
            end = group
        return Probe(kind, value, expected, foil, is_subject, group_value, self._span(keyword, end), parts)

    def _plain(self, token: Token) -> tuple[str, bool, Span]:
        return self._str(token), False, self._span(token)

    def paraphrase(self, children: list[Token]) -> Probe:
        return self._probe("paraphrase", children[0], self._plain(children[1]), None)

    def neighbour(self, children: list[Any]) -> Probe:
        return self._probe("neighbour", children[0], children[1], children[2])

    def attribute(self, children: list[Any]) -> Probe:
        return self._probe("attribute", children[0], children[1], children[2])

    def alias(self, children: list[Any]) -> Probe:
        return self._probe("alias", children[0], children[1], children[2])

    def keep(self, children: list[Any]) -> Probe:
        return self._probe("keep", children[0], self._plain(children[1]), children[2])

    def hop(self, children: list[Any]) -> Probe:
        return self._probe("hop", children[0], self._plain(children[1]), children[2])

    def reverse(self, children: list[Any]) -> Probe:
        return self._probe("reverse", children[0], self._plain(children[1]), children[2])

    def multihop(self, children: list[Any]) -> Probe:
        group = children[3] if len(children) > 3 else None
        return self._probe("multihop", children[0], self._plain(children[1]), children[2], group)

    def portability(self, children: list[Any]) -> Portability:
        return Portability(tuple(children[2:-1]), self._span(children[0], children[-1]))

    # The grammar's rule "list", bound last: a method named ``list`` above this line would
    # shadow the builtin in every annotation of the class.
    list = list_value


class _Parser:
    """One lark parser and its builder; parses are serialised by a lock."""

    def __init__(self) -> None:
        self.builder = _Builder()
        self.lark = Lark(
            grammar_text(),
            parser="lalr",
            lexer="contextual",
            transformer=self.builder,
            maybe_placeholders=True,
            lexer_callbacks={"COMMENT": self._comment},
        )
        self.lock = threading.RLock()

    def _comment(self, token: Token) -> Token:
        self.builder.comments.append(Comment(*_start(token), token.value.rstrip()))
        return token

    def raw_parse(self, text: str) -> Any:
        """Parse without bookkeeping; used to match syntax-error examples."""
        return self.lark.parse(text)


@lru_cache(maxsize=1)
def parser() -> _Parser:
    return _Parser()


def parse_source(text: str, path: str = "<spec>") -> tuple[Spec | None, list[Diagnostic]]:
    """Parse one file. On a syntax error the spec is None and one diagnostic explains it."""
    from .syntax_errors import explain  # the example table parses with this parser

    state = parser()
    with state.lock:
        builder = state.builder
        builder.file, builder.diagnostics, builder.comments = path, [], []
        try:
            items: list[Item] = state.lark.parse(text)  # type: ignore[assignment]  # the builder's list, not a Tree
        except UnexpectedInput as error:
            diagnostic = explain(error, text, path)
            return None, [diagnostic]
        except VisitError as error:  # a builder bug must still not escape as a traceback
            return None, [Diagnostic(None, f"{path}: internal parser error: {error.orig_exc}")]
        finally:
            diagnostics, comments = builder.diagnostics, builder.comments
            builder.diagnostics, builder.comments = [], []
        return Spec(tuple(items), path, _with_blank_lines(comments, text)), diagnostics


def _with_blank_lines(comments: list[Comment], text: str) -> tuple[Comment, ...]:
    """Mark comments that follow an empty line, so the formatter can keep the gap."""
    if not comments:
        return ()
    lines = text.split("\n")
    return tuple(
        Comment(c.line, c.column, c.text, c.line >= 2 and not lines[c.line - 2].strip())
        for c in comments
    )


def parse_text(text: str, path: str = "<spec>") -> Spec:
    """Parse one file or raise ``SpecError`` (syntax only; see ``load`` for checks)."""
    spec, diagnostics = parse_source(text, path)
    if diagnostics or spec is None:
        raise SpecError(diagnostics, {path: text})
    return spec

"""Turn lark's syntax errors into named, actionable messages.

``EXAMPLES`` maps a message to typical wrong inputs; lark's ``match_examples`` finds
the one that fails in the same parser state (and on the same kind of token) as the
user's text. Anything unmatched gets a generic "unexpected X; expected Y" message.
"""

from __future__ import annotations

import re
from functools import lru_cache

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .diagnostics import Diagnostic, did_you_mean
from .ir import Span

_EDIT = 'edit "S" r: "a" -> "b"'

#: message -> wrong inputs that show the mistake (checked by tests/test_spec_errors.py).
EXAMPLES: dict[str, list[str]] = {
    "missing '->' between the old and the new object": [
        'edit "S" r: "a" "b"',
        'edit "S" prompt "{subject} x": "a" "b"',
    ],
    "an edit changes its object with '->' ('=>' gives a probe's expected answer)": [
        'edit "S" r: "a" => "b"',
        'edit "S" r => "b"',
        'edit "S" prompt "p" => "b"',
    ],
    "a probe gives its expected answer with '=>' ('->' is for the edit itself)": [
        _EDIT + ' { neighbour "L" -> "P" }',
        _EDIT + ' { keep "p" -> "P" }',
        _EDIT + ' { portability { hop "p" -> "P" } }',
        _EDIT + ' { portability { alias "A" -> "P" } }',
    ],
    "this probe needs an expected answer: '=> \"answer\"'": [
        _EDIT + ' { neighbour "L" }',
        _EDIT + ' { keep "p" }',
        _EDIT + ' { portability { hop "p" } }',
        _EDIT + ' { portability { alias "A" } }',
        _EDIT + ' { neighbour prompt "p" }',
    ],
    "a paraphrase expects the edit's new object; remove '=> ...'": [
        _EDIT + ' { paraphrase "p" => "x" }',
        'relation r "t" { paraphrase "p" => "x" }',
    ],
    "an edit needs a relation name or 'prompt \"...\"' after the subject": [
        'edit "S": "a" -> "b"',
        'edit "S" -> "b"',
        'edit "S" "p" -> "b"',
    ],
    "an edit needs ':' after the relation or prompt, then \"old\" -> \"new\" (or just -> \"new\")": [
        'edit "S" r "a" -> "b"',
        'edit "S" prompt "p" "a" -> "b"',
    ],
    "the subject must be a quoted string, e.g. edit \"Eiffel Tower\" ...": [
        'edit S r: "a" -> "b"',
        "edit 12 r",
    ],
    "objects must be quoted strings": [
        'edit "S" r: a -> "b"',
        'edit "S" r: "a" -> b',
        'edit "S" r -> b',
        'edit "S" r: 1 -> "b"',
    ],
    "expect needs a comparison: expect METRIC >= NUMBER": [
        "expect locality 0.9",
        'expect locality "x"',
    ],
    "expect compares with >=, >, <= or < (not '=')": [
        "expect locality = 0.9",
    ],
    "an expect threshold must be a number, e.g. expect locality >= 0.95": [
        'expect locality >= "0.9"',
        "expect locality >= high",
        "expect locality >= 4..8",
    ],
    "expect needs a metric name, e.g. expect locality >= 0.95": [
        "expect >= 0.9",
        'expect "locality" >= 0.9',
    ],
    "hyperparameters are written 'name = value'": [
        "method rome { layer 4 }",
        "method rome { layer }",
        'method rome { layer "x" }',
    ],
    "hyperparameters are written 'name = value' (use '=', not ':')": [
        "method rome { layer: 4 }",
    ],
    "a hyperparameter needs a value after '='": [
        "method rome { layer = }",
        "method rome { layer = -> }",
    ],
    "method needs an editor name, e.g. method rome { layer = 4 }": [
        'method "rome"',
        "method { layer = 4 }",
    ],
    "a relation needs a name and a template, e.g. relation located_in \"{subject} is located in\"": [
        'relation "{subject} is in"',
        "relation r { }",
        'relation r { paraphrase "p" }',
    ],
    "a relation block holds only paraphrases": [
        'relation r "t" { neighbour "L" => "P" }',
        'relation r "t" { keep "p" => "P" }',
    ],
    "the model name must be a quoted string, e.g. model \"smollm2\"": [
        "model smollm2",
        "model 3",
    ],
    "include takes a quoted file name, e.g. include \"more_facts.kedit\"": [
        "include facts",
    ],
    "alias, hop, reverse and multihop go inside a 'portability { ... }' block": [
        _EDIT + ' { hop "p" => "x" }',
        _EDIT + ' { alias "A" => "x" }',
        _EDIT + ' { reverse "p" => "x" }',
        _EDIT + ' { multihop "p" => "x" }',
    ],
    "a range is written LOW..HIGH with whole numbers, e.g. layers = 4..8": [
        "method memit { layers = 4.. }",
        "method memit { layers = 4..x }",
    ],
    "list items are separated by commas": [
        "method memit { layers = [1 2] }",
    ],
    "unmatched '}'": [
        "}",
        'model "m" }',
        _EDIT + " { } }",
    ],
    "a portability block holds alias, hop, reverse and multihop probes": [
        _EDIT + ' { portability { neighbour "L" => "P" } }',
        _EDIT + ' { portability { paraphrase "p" } }',
    ],
    "'group' needs a quoted name, e.g. group \"case-1\"": [
        _EDIT + ' { portability { multihop "q" => "a" group } }',
        _EDIT + ' { portability { multihop "q" => "a" group g } }',
    ],
    "'not' needs the competing answer as a quoted string": [
        _EDIT + ' { neighbour "L" => "P" not }',
    ],
}

_STATEMENTS = ("model", "method", "expect", "relation", "edit", "include")
_BODY_WORDS = ("paraphrase", "neighbour", "keep", "attribute", "portability", "method")
_PORTABILITY_WORDS = ("alias", "hop", "reverse", "multihop")

_NAMES = {
    "STRING": "a quoted string", "NAME": "a name", "INT": "a whole number",
    "FLOAT": "a number", "COMPARE": "a comparison (>=, >, <=, <)", "LBRACE": "'{'",
    "RBRACE": "'}'", "LBRACKET": "'['", "RBRACKET": "']'", "_COMMA": "','", "_COLON": "':'",
    "_EQUALS": "'='", "_ARROW": "'->'", "_FAT_ARROW": "'=>'", "_RANGE_SEP": "'..'",
    "_GROUP": "'group'", "_NOT": "'not'", "$END": "the end of the file",
}


def _describe(terminal: str) -> str:
    if terminal in _NAMES:
        return _NAMES[terminal]
    return f"'{terminal.lower()}'" if terminal.isupper() else terminal


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "the end of the file"
    if token.type == "STRING":
        return f"the string {token.value}"
    return f"'{token.value}'"


def _end_span(text: str, path: str) -> Span:
    lines = text.split("\n")
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()
    return Span(path, len(lines), len(lines[-1]) + 1, len(lines), len(lines[-1]) + 1)


def _unknown_word(token: Token, expected: set[str]) -> str | None:
    """A bare word where a keyword belongs: suggest the keyword it was meant to be."""
    if token.type != "NAME":
        return None
    words = [w.lower() for w in expected if w.isupper() and w.lower() in
             _STATEMENTS + _BODY_WORDS + _PORTABILITY_WORDS + ("neighbor",)]
    if len(words) < 2:
        return None
    hint = did_you_mean(token.value, words)
    where = "statement" if "edit" in words else "probe" if "paraphrase" in words else "portability probe"
    return f"unknown {where} '{token.value}'{hint}"


def _word_at(text: str, pos: int) -> str:
    match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[pos:])
    return match.group(0) if match else ""


def _offset(error: UnexpectedCharacters) -> int:
    """Where in the text the unexpected character is (lark sets it for this error)."""
    assert error.pos_in_stream is not None, "UnexpectedCharacters without a position"
    return error.pos_in_stream


def _character_message(error: UnexpectedCharacters, text: str) -> str:
    pos = _offset(error)
    char = text[pos] if pos < len(text) else ""
    word = _word_at(text, pos)
    if word:
        allowed = set(error.allowed or ())
        suggestion = _unknown_word(Token("NAME", word), allowed)
        if suggestion:
            return suggestion
        wanted = _listing(allowed)
        return f"unexpected word '{word}'; expected {wanted}"
    if char == '"':
        return "unterminated string (a string ends on the line it starts; write \\n for a newline)"
    if char in "'\u2018\u2019\u201c\u201d":
        return "strings use straight double quotes: \"...\""
    if char == ";":
        return "statements need no ';'"
    if char == ".":
        return "numbers need a digit before the point, e.g. 0.5"
    if char.isspace():
        return f"unexpected whitespace character U+{ord(char):04X}"
    return f"unexpected character {char!r}; expected {_listing(set(error.allowed or ()))}"


def _listing(terminals: set[str]) -> str:
    wanted = sorted({_describe(t) for t in terminals if t != "COMMENT"})
    if not wanted:
        return "nothing more"
    return ", ".join(wanted[:-1]) + (" or " if len(wanted) > 1 else "") + wanted[-1]


def _state(error: UnexpectedInput) -> object:
    """The LALR state number an error happened in (lark hands out state objects)."""
    return getattr(error.state, "position", error.state)


@lru_cache(maxsize=1)
def _example_table() -> dict[tuple[object, str], str]:
    """(parser state, token type) -> message, from parsing every example once."""
    from .parse import parser

    table: dict[tuple[object, str], str] = {}
    for message, examples in EXAMPLES.items():
        for example in examples:
            try:
                parser().raw_parse(example)
            except UnexpectedToken as error:
                table.setdefault((_state(error), error.token.type), message)
            except UnexpectedInput:
                continue
    return table


def explain(error: UnexpectedInput, text: str, path: str) -> Diagnostic:
    """One diagnostic for a syntax error, pointing at the offending token."""
    if isinstance(error, UnexpectedCharacters):
        span = Span(path, error.line, error.column, error.line,
                    error.column + max(1, len(_word_at(text, _offset(error)))))
        return Diagnostic(span, _character_message(error, text))

    token = getattr(error, "token", None)
    at_end = isinstance(error, UnexpectedEOF) or token is None or token.type == "$END"
    if at_end or token is None:
        span = _end_span(text, path)
    else:
        span = Span(path, token.line, token.column, token.end_line or token.line,
                    token.end_column or token.column + 1)

    expected: set[str] = set(getattr(error, "expected", None) or getattr(error, "accepts", None) or ())
    message = _unknown_word(token, expected) if isinstance(token, Token) else None
    if message is None and isinstance(token, Token):
        message = _example_table().get((_state(error), token.type))
    if message is None and at_end and "RBRACE" in expected:
        message = "missing '}' before the end of the file (a block is still open)"
    if message is None:
        found = _describe_token(token) if isinstance(token, Token) else "the end of the file"
        message = f"unexpected {found}; expected {_listing(expected)}"
    return Diagnostic(span, message)

"""Fuzz: whatever the input, only ``SpecError`` (never a traceback) may escape."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kedit_vc.lang import SpecError, load_text, parse_source
from kedit_vc.compiler import lower

REPO = Path(__file__).resolve().parents[1]
SEEDS = [(REPO / "specs" / "demo.kedit").read_text(), (REPO / "specs" / "counterfact_sample.kedit").read_text()[:3000]]
TOKENS = ['edit', 'relation', 'method', 'expect', 'model', 'include', 'prompt', 'paraphrase', 'neighbour',
          'keep', 'attribute', 'portability', 'alias', 'hop', 'reverse', 'multihop', 'group', 'not', '{', '}',
          '[', ']', '"', '"x"', '"{subject}"', '"{}"', '->', '=>', ':', '=', ',', '..', '4..8', '0.5', '-1',
          '1e999', '>=', '<', '#', '\n', ' ', '\\', '"\\q"', 'rome', 'auto', 'layer', 'weights', 'locality']


def _only_spec_errors(text: str) -> None:
    try:
        lower(load_text(text, "fuzz.kedit", directory=REPO / "specs"))
    except SpecError as error:
        assert str(error)  # the report renders
    spec, _ = parse_source(text, "fuzz.kedit")


settings_ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings_
@given(st.text(max_size=200))
def test_random_text(text: str) -> None:
    _only_spec_errors(text)


@settings_
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join))
def test_random_token_soup(text: str) -> None:
    _only_spec_errors(text)


@settings_
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_valid_specs(seed: str, data: st.DataObject) -> None:
    text = seed
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(text)))
        action = data.draw(st.sampled_from(["delete", "insert", "replace", "token"]))
        length = data.draw(st.integers(1, 12))
        if action == "delete":
            text = text[:position] + text[position + length:]
        elif action == "insert":
            text = text[:position] + data.draw(st.text(max_size=length)) + text[position:]
        elif action == "token":
            text = text[:position] + " " + data.draw(st.sampled_from(TOKENS)) + " " + text[position:]
        else:
            text = text[:position] + data.draw(st.text(min_size=1, max_size=length)) + text[position + length:]
    _only_spec_errors(text)

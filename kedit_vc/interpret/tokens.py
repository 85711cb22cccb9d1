"""Where a subject sits in a prompt, and how to show tokens to a person.

Every interpretability tool encodes with ``encode_text`` (the shared neutral prefix),
so the positions here are the ones the editors read keys at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kedit_vc.errors import UsageError
from kedit_vc.models.prompting import encode_continuation, encode_text, prefix_ids


@dataclass(frozen=True)
class SubjectTokens:
    """A prompt's token ids and its subject's span ``[start, end)`` in them (prefix included)."""

    text: str
    ids: tuple[int, ...]
    start: int
    end: int
    prefix: int  # how many leading ids are the shared prefix

    @property
    def last(self) -> int:
        """Index of the subject's last token (where ROME reads its key)."""
        return self.end - 1


def template_of(prompt: str, subject: str) -> str:
    """``prompt`` with its first occurrence of ``subject`` replaced by ``{}``."""
    if "{}" in prompt:
        return prompt
    if subject not in prompt:
        raise UsageError(f"the subject {subject!r} does not occur in the prompt {prompt!r}")
    return prompt.replace(subject, "{}", 1)


def locate_subject(tokenizer: Any, prompt: str, subject: str) -> SubjectTokens:
    """Tokenize ``prompt`` (a ``{}`` template or a text containing ``subject``) and find the subject.

    The text before the subject is tokenized without its trailing space, since BPE
    tokenizers fold the space into the subject's first token (" E" of " Eiffel").
    """
    template = template_of(prompt, subject)
    text = template.replace("{}", subject, 1)
    before = template[: template.index("{}")]
    ids = encode_text(tokenizer, text)
    start = len(encode_text(tokenizer, before.rstrip())) if before.strip() else len(prefix_ids(tokenizer))
    end = len(encode_text(tokenizer, before + subject))
    if ids[:end] != encode_text(tokenizer, before + subject) or not start < end <= len(ids):
        raise UsageError(
            f"the subject {subject!r} does not fall on token boundaries in {text!r}; "
            "write the subject exactly as it appears, including its capitalisation"
        )
    return SubjectTokens(text=text, ids=tuple(ids), start=start, end=end, prefix=len(prefix_ids(tokenizer)))


def target_ids(tokenizer: Any, target: str) -> list[int]:
    """Ids of an answer as it continues a prompt: ``"Paris"`` -> ids of ``" Paris"``."""
    text = target if target.startswith(" ") else " " + target
    ids = encode_continuation(tokenizer, text)
    if not ids:
        raise UsageError(f"the target {target!r} encodes to no tokens")
    return ids


def token_label(tokenizer: Any, token_id: int) -> str:
    """A printable form of one token: its decoded text, with spaces shown and newlines escaped."""
    text = tokenizer.decode([int(token_id)])
    return text.replace("\n", "\\n") if text.strip() else repr(text)

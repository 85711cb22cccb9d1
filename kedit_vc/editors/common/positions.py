"""Token positions of a subject inside a prompt, under the shared prompt prefix."""

from __future__ import annotations

from typing import Any

from kedit_vc.errors import EditError
from kedit_vc.models.prompting import encode_text


def subject_last_index(tokenizer: Any, template: str, subject: str) -> int:
    """Index of the subject's last token in ``encode_text(template.format(subject))``.

    ``template`` holds one ``{}`` for the subject. The prefix before ``{}`` plus the
    subject is tokenized on its own; its length minus one is the subject's last token
    (the "subject_last" fact-token strategy of ROME/MEMIT).
    """
    if "{}" not in template:
        raise EditError(f"the prompt {template!r} has no place for the subject")
    before = template[: template.index("{}")]
    return len(encode_text(tokenizer, before + subject)) - 1


def fill(template: str, subject: str) -> str:
    return template.replace("{}", subject, 1)

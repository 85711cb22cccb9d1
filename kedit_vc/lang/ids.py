"""Stable edit ids: history refers to an edit by what it says, not where it is written."""

from __future__ import annotations

import hashlib
import json


def edit_id(subject: str, template: str, new: str) -> str:
    """``e-`` + 12 hex digits of sha256 over (subject, prompt template, new object).

    The template is the relation's template or the inline prompt, with ``{subject}``;
    formatting, comments, probes and the old object do not change the id.
    """
    payload = json.dumps([subject, template, new], ensure_ascii=False)
    return "e-" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]

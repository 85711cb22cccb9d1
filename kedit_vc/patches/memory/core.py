"""``MemoryPatch``: the facts one commit adds to the edit memory, as plain text records.

In-context methods (IKE, MemPrompt) change no weight: a commit stores its edited facts, and
at query time the method puts what applies in front of the caller's input. One patch holds
one commit's facts (``MemoryFact``: id, subject, relation template, prompt, new and old
object, and the demonstrations the method builds from the fact) and the query-time
``settings`` of the method that made it (``policy``: ``ike``, ``memprompt``, ``serac`` or ``mello``,
``k``, ``layer``, ``threshold``, SERAC's ``classifier`` hash...). The live memory of a revision is the
union of its live
commits' facts (``live.live_memory``), so a revert drops exactly the reverted commit's facts.

Texts are stored with their token ids (``key_ids``: the prompt as the retriever reads it,
``subject_end`` the index of its last subject token; ``head_ids``: the context head, e.g.
``New Fact: ... Prompt:``; each demonstration's ids),
made with the store's tokenizer at edit time: attaching the memory needs no tokenizer and
the context the model sees is exactly reproducible. Embeddings are not stored: they are
computed when the memory is attached, by the model it is attached to (see ``live``).

File: safetensors with no tensors whose metadata holds ``format`` = ``kvc-memory``,
``format_version``, ``content_hash`` and ``info`` (canonical JSON of everything above). The
content hash is the sha256 of that JSON, so a changed character is refused on load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from kedit_vc.patches import envelope
from kedit_vc.patches.registry import PatchError

FORMAT = "kvc-memory"
FORMAT_VERSION = "1"
HASH_FORMAT = b"kvc-memory-hash/1\0"
POLICIES = ("ike", "memprompt", "serac", "mello")
DEMO_KINDS = ("copy", "update", "retain")


@dataclass(frozen=True)
class Demo:
    """One demonstration built from a fact (IKE): ``kind`` copy / update / retain, its text and ids."""

    kind: str
    text: str
    ids: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "ids": list(self.ids)}


@dataclass(frozen=True)
class MemoryFact:
    """One edited fact as text: ``prompt`` is ``relation`` with ``subject`` filled in."""

    id: str
    subject: str
    relation: str
    prompt: str
    target_new: str
    target_true: str | None
    key_ids: tuple[int, ...]
    subject_end: int
    head_text: str
    head_ids: tuple[int, ...]
    demos: tuple[Demo, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "subject": self.subject, "relation": self.relation, "prompt": self.prompt,
                "target_new": self.target_new, "target_true": self.target_true, "key_ids": list(self.key_ids),
                "subject_end": self.subject_end, "head_text": self.head_text, "head_ids": list(self.head_ids),
                "demos": [d.to_json() for d in self.demos]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "MemoryFact":
        return cls(str(data["id"]), str(data["subject"]), str(data["relation"]), str(data["prompt"]),
                   str(data["target_new"]), None if data.get("target_true") is None else str(data["target_true"]),
                   _ids(data["key_ids"]), int(data["subject_end"]), str(data["head_text"]), _ids(data["head_ids"]),
                   tuple(Demo(str(d["kind"]), str(d["text"]), _ids(d["ids"])) for d in data["demos"]))


def _ids(values: Any) -> tuple[int, ...]:
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise PatchError(f"token ids must be a list of integers, got {values!r:.60}")
    return tuple(values)


@dataclass(frozen=True, eq=False)
class MemoryPatch:
    """The facts one commit adds to the edit memory and the settings to use them with.

    ``settings``: the method's query-time settings (``policy`` and its own keys, JSON values);
    ``lead_ids``: the tokenizer's shared prefix ids (``models.prompting.prefix_ids``), which the
    context goes after; ``vocab_size``: the width of the embedding the ids index.
    """

    facts: tuple[MemoryFact, ...]
    settings: Mapping[str, Any]
    lead_ids: tuple[int, ...] = ()
    vocab_size: int = 0
    meta: Mapping[str, str] = field(default_factory=dict)

    kind = "memory"

    def __post_init__(self) -> None:
        ids = [f.id for f in self.facts]
        if len(set(ids)) != len(ids):
            raise PatchError("an edit memory patch holds each fact id once")
        policy = self.settings.get("policy")
        if policy not in POLICIES:
            raise PatchError(f"edit memory policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        for fact in self.facts:
            if not fact.key_ids or not fact.head_ids:
                raise PatchError(f"fact {fact.id}: empty key or head token ids")
            if not 0 <= fact.subject_end < len(fact.key_ids):
                raise PatchError(f"fact {fact.id}: subject_end {fact.subject_end} is outside its "
                                 f"{len(fact.key_ids)} key ids")
            bad = [d.kind for d in fact.demos if d.kind not in DEMO_KINDS]
            if bad:
                raise PatchError(f"fact {fact.id}: demonstration kind {bad[0]!r} is not one of {', '.join(DEMO_KINDS)}")
        object.__setattr__(self, "settings", MappingProxyType(dict(sorted(self.settings.items()))))
        object.__setattr__(self, "meta", MappingProxyType(dict(sorted(self.meta.items()))))
        object.__setattr__(self, "lead_ids", tuple(int(i) for i in self.lead_ids))

    def __repr__(self) -> str:
        return f"MemoryPatch({self.settings['policy']}, +{len(self.facts)} facts)"

    @property
    def policy(self) -> str:
        return str(self.settings["policy"])

    # -- content --------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Everything the file holds, as JSON."""
        return {"facts": [f.to_json() for f in self.facts], "settings": dict(self.settings),
                "lead_ids": list(self.lead_ids), "vocab_size": self.vocab_size, "meta": dict(self.meta)}

    def content_hash(self) -> str:
        """sha256 of the canonical JSON info."""
        digest = hashlib.sha256(HASH_FORMAT)
        digest.update(json.dumps(self.info(), sort_keys=True, ensure_ascii=False).encode("utf-8"))
        return digest.hexdigest()

    def to_bytes(self) -> bytes:
        return envelope.encode(FORMAT, FORMAT_VERSION, self.info(), {}, self.content_hash(), ensure_ascii=False)

    @classmethod
    def from_bytes(cls, data: bytes, expected_hash: str | None = None, source: str = "memory") -> "MemoryPatch":
        """Parse and verify an edit memory file; ``PatchError`` when malformed, altered or unexpected."""
        try:
            info, _, recorded = envelope.decode(data, FORMAT, FORMAT_VERSION, None)
            patch = cls(facts=tuple(MemoryFact.from_json(f) for f in info["facts"]), settings=dict(info["settings"]),
                        lead_ids=_ids(info["lead_ids"]), vocab_size=int(info["vocab_size"]), meta=dict(info["meta"]))
        except PatchError as error:
            raise PatchError(f"{source} is not a valid kvc edit memory: {error}") from None
        except Exception as error:  # noqa: BLE001 - json, key and validation errors alike
            raise PatchError(f"{source} is not a valid kvc edit memory file: {error}") from None
        envelope.check_hash(patch.content_hash(), recorded, expected_hash, source, "edit memory")
        return patch

    # -- against a model ------------------------------------------------------------

    def check_model(self, model: Any) -> None:
        """Refuse a model whose vocabulary is not the one the stored token ids index."""
        embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        width = int(embeddings.weight.shape[0]) if embeddings is not None else None
        if width is not None and self.vocab_size and width != self.vocab_size:
            raise PatchError(f"this edit memory was tokenized for a vocabulary of {self.vocab_size}, but the model's "
                             f"has {width}; was it made for another model?")

    def describe(self) -> dict[str, Any]:
        """What ``kvc show`` / ``kvc diff`` print: how many facts, which, and the settings."""
        n = len(self.facts)
        facts = [f"{f.prompt} -> {f.target_new}" for f in self.facts]
        return {"kind": self.kind, "policy": self.policy, "facts_added": n, "facts": facts[:20],
                "settings": dict(self.settings),
                "line": f"{n} fact{'' if n == 1 else 's'} added to the edit memory ({self.policy}): "
                        + "; ".join(facts[:3]) + (" ..." if n > 3 else "")}

"""The lowered plan: the contract between the compiler and the editors.

A plan is plain, JSON-able data (no torch). The compiler produces it from a checked
spec; editors consume its ``EditRequest``s; evaluation scores its ``Probe``s. Keeping it
small and documented lets a plan be stored with each commit and re-run later.

JSON schema (``Plan.to_json``), version 1::

    {"version": 1,
     "model": "smollm2" | null,
     "expectations": [{"metric": "locality", "op": ">=", "threshold": 0.95}],
     "calls": [{"method": "rome", "hparams": {"layer": 4},
                "requests": [{"edit_id": "e-1a2b3c4d5e6f",
                              "subject": "Eiffel Tower",
                              "prompt": "{} is located in the city of",
                              "target_new": "Rome", "target_true": "Paris",
                              "probes": [{"kind": "rewrite", "prompt": "...",
                                          "target": "Rome", "foil": "Paris"}]}]}]}

Derived edits (``kvc commit --derive``) are requests like any other with one more key,
``"derived": {"parent": "e-...", "rule": "located_in implies P17", "kind": "compose",
"evidence": {"source": "model", "prompt": "Rome is a city in the country of",
"answer": "Italy", "probability": 0.81}}``; a plan may carry ``"notes"`` (derived edits
dropped, and why). Both keys are optional, so plans written before them still load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

PLAN_VERSION = 1

#: Probe kinds, grouped by the metric family they feed.
PROBE_KINDS: Mapping[str, str] = {
    "rewrite": "reliability",       # the edit's own prompt: must give the new object
    "paraphrase": "generalization", # scope: must give the new object too
    "neighbour": "locality",        # other subjects: must keep their answer
    "keep": "locality",             # other attributes of the subject: must not change
    "attribute": "locality",        # other subjects whose true answer is the new object
    "alias": "portability",         # subject replaced by an alias
    "hop": "portability",           # one-hop consequence
    "reverse": "portability",       # reverse relation
    "multihop": "portability",      # MQuAKE multi-hop question
}


@dataclass(frozen=True)
class Probe:
    """One concrete prompt and the answer expected after the edit.

    ``prompt`` has the subject already substituted. ``target`` is the expected answer
    and ``foil`` the competing answer (the old object for rewrite/paraphrase probes,
    the new object for neighbour probes) used by CounterFact-style comparisons;
    scorers prepend the leading space themselves. ``group`` ties probes that are scored
    together (a MQuAKE case counts as answered when any question of its group is).
    """

    kind: str
    prompt: str
    target: str
    foil: str | None = None
    group: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"kind": self.kind, "prompt": self.prompt, "target": self.target, "foil": self.foil}
        if self.group is not None:
            data["group"] = self.group
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Probe":
        return cls(data["kind"], data["prompt"], data["target"], data.get("foil"), data.get("group"))


@dataclass(frozen=True)
class Derivation:
    """Where a derived request came from: its parent edit, the rule, and the evidence.

    ``evidence`` is JSON-able: ``source`` is ``"model"`` (with the ``prompt`` asked, the
    greedy ``answer`` and the first answer token's ``probability``), ``"spec"`` (the
    explicit edit that states the fact, ``at`` file:line) or ``"alias"``.
    """

    parent: str
    rule: str
    kind: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"parent": self.parent, "rule": self.rule, "kind": self.kind,
                "evidence": dict(sorted(self.evidence.items()))}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Derivation":
        return cls(data["parent"], data["rule"], data.get("kind", ""), dict(data.get("evidence", {})))


@dataclass(frozen=True)
class EditRequest:
    """One fact to write, in the ROME/MEMIT request convention.

    ``prompt`` is a template with ``{}`` where the subject goes (the rewrite prompt);
    ``target_new``/``target_true`` have no leading space.
    """

    edit_id: str
    subject: str
    prompt: str
    target_new: str
    target_true: str | None = None
    probes: tuple[Probe, ...] = ()
    derived: Derivation | None = None  # set on edits the compiler derived from a rule

    @property
    def rewrite_prompt(self) -> str:
        return self.prompt.format(self.subject)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "edit_id": self.edit_id,
            "subject": self.subject,
            "prompt": self.prompt,
            "target_new": self.target_new,
            "target_true": self.target_true,
            "probes": [p.to_json() for p in self.probes],
        }
        if self.derived is not None:
            data["derived"] = self.derived.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EditRequest":
        return cls(
            edit_id=data["edit_id"],
            subject=data["subject"],
            prompt=data["prompt"],
            target_new=data["target_new"],
            target_true=data.get("target_true"),
            probes=tuple(Probe.from_json(p) for p in data.get("probes", ())),
            derived=Derivation.from_json(data["derived"]) if data.get("derived") else None,
        )


@dataclass(frozen=True)
class EditorCall:
    """One editor invocation: a method, its hyperparameter overrides, and a batch."""

    method: str
    hparams: Mapping[str, Any] = field(default_factory=dict)
    requests: tuple[EditRequest, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "hparams": dict(sorted(self.hparams.items())),
            "requests": [r.to_json() for r in self.requests],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EditorCall":
        return cls(
            method=data["method"],
            hparams=dict(data.get("hparams", {})),
            requests=tuple(EditRequest.from_json(r) for r in data.get("requests", ())),
        )


@dataclass(frozen=True)
class Expectation:
    """A threshold the CI gate checks, e.g. ``locality >= 0.95``."""

    metric: str
    op: str
    threshold: float

    def holds(self, value: float) -> bool:
        return {">=": value >= self.threshold, ">": value > self.threshold,
                "<=": value <= self.threshold, "<": value < self.threshold}[self.op]

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "op": self.op, "threshold": self.threshold}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Expectation":
        return cls(data["metric"], data["op"], float(data["threshold"]))


@dataclass(frozen=True)
class Plan:
    """Everything needed to run a spec: model reference, editor calls, thresholds."""

    calls: tuple[EditorCall, ...]
    model: str | None = None
    expectations: tuple[Expectation, ...] = ()
    notes: tuple[str, ...] = ()  # derivation's remarks (derived edits dropped and why)

    @property
    def requests(self) -> tuple[EditRequest, ...]:
        return tuple(r for call in self.calls for r in call.requests)

    @property
    def derived(self) -> tuple[EditRequest, ...]:
        return tuple(r for r in self.requests if r.derived is not None)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": PLAN_VERSION,
            "model": self.model,
            "expectations": [e.to_json() for e in self.expectations],
            "calls": [c.to_json() for c in self.calls],
        }
        if self.notes:
            data["notes"] = list(self.notes)
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Plan":
        version = data.get("version")
        if version != PLAN_VERSION:
            raise ValueError(f"unsupported plan version {version!r} (expected {PLAN_VERSION})")
        return cls(
            calls=tuple(EditorCall.from_json(c) for c in data.get("calls", ())),
            model=data.get("model"),
            expectations=tuple(Expectation.from_json(e) for e in data.get("expectations", ())),
            notes=tuple(data.get("notes", ())),
        )

    @classmethod
    def loads(cls, text: str) -> "Plan":
        return cls.from_json(json.loads(text))

"""Raw probe scores: the numbers every metric is computed from, JSON-able.

Scoring a model once gives a ``ProbeScores``; metrics and reports are pure functions
of it (and of the pre-edit scores), so a stored score file can be re-summarised
without loading a model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

SCORES_VERSION = 1


@dataclass(frozen=True)
class ProbeScore:
    """Teacher-forced scores of one probe.

    ``target_nll``/``foil_nll``: mean per-token NLL (nats) of ``" " + target`` / ``" " + foil``
    after the prompt. ``target_acc``: share of target tokens that are the argmax
    (EasyEdit token accuracy). ``target_ids``/``argmax_ids``: the target's token ids and
    the model's argmax at the same teacher-forced positions, both of length
    ``len(target tokens)`` (locality-as-agreement compares argmax ids pre vs post).

    ``generated``: the decoded greedy continuation of the prompt (``kedit_vc.eval.generative``),
    None where generation was not asked for. ``raw``: the same probe scored on the raw
    prompt (no shared prefix token, as a user prompts an exported model), None where raw
    prompts were not scored.
    """

    kind: str
    prompt: str
    target: str
    target_nll: float
    target_acc: float
    target_ids: tuple[int, ...]
    argmax_ids: tuple[int, ...]
    foil: str | None = None
    foil_nll: float | None = None
    group: str | None = None
    generated: str | None = None
    raw: "ProbeScore | None" = None

    @property
    def correct(self) -> bool:
        """Every target token is the argmax (teacher-forced exact match)."""
        return self.target_ids == self.argmax_ids

    @property
    def beats_foil(self) -> bool | None:
        """CounterFact comparison: target has the lower mean NLL (None without a foil)."""
        return None if self.foil_nll is None else self.target_nll < self.foil_nll

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "prompt": self.prompt, "target": self.target,
            "target_nll": self.target_nll, "target_acc": self.target_acc,
            "target_ids": list(self.target_ids), "argmax_ids": list(self.argmax_ids),
            "foil": self.foil, "foil_nll": self.foil_nll, "group": self.group,
            **({"generated": self.generated} if self.generated is not None else {}),
            **({"raw": self.raw.to_json()} if self.raw is not None else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ProbeScore":
        return cls(
            kind=data["kind"], prompt=data["prompt"], target=data["target"],
            target_nll=float(data["target_nll"]), target_acc=float(data["target_acc"]),
            target_ids=tuple(data["target_ids"]), argmax_ids=tuple(data["argmax_ids"]),
            foil=data.get("foil"),
            foil_nll=None if data.get("foil_nll") is None else float(data["foil_nll"]),
            group=data.get("group"), generated=data.get("generated"),
            raw=None if data.get("raw") is None else ProbeScore.from_json(data["raw"]),
        )


@dataclass(frozen=True)
class EditScores:
    """The scores of one edit's probes, in the order of ``EditRequest.probes``."""

    edit_id: str
    probes: tuple[ProbeScore, ...]

    def raw_view(self) -> "EditScores | None":
        """The same edit's scores on raw prompts (None unless every probe has them)."""
        if not self.probes or any(p.raw is None for p in self.probes):
            return None
        return EditScores(self.edit_id, tuple(p.raw for p in self.probes if p.raw is not None))

    def to_json(self) -> dict[str, Any]:
        return {"edit_id": self.edit_id, "probes": [p.to_json() for p in self.probes]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EditScores":
        return cls(data["edit_id"], tuple(ProbeScore.from_json(p) for p in data["probes"]))


#: Which prompt forms a ``ProbeScores`` holds: prefixed only; prefixed and raw; or one
#: form standing for both because the tokenizer adds its own BOS (no prefix token is
#: added, so raw and prefixed prompts are the same tokens and are scored once).
PROMPT_FORMS = ("prefixed", "both", "same")


@dataclass(frozen=True)
class ProbeScores:
    """Scores of every edit of an evaluation, in request order; ``forms`` from ``PROMPT_FORMS``."""

    edits: tuple[EditScores, ...]
    forms: str = "prefixed"

    def by_id(self) -> dict[str, EditScores]:
        return {e.edit_id: e for e in self.edits}

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": SCORES_VERSION, "edits": [e.to_json() for e in self.edits]}
        if self.forms != "prefixed":
            data["forms"] = self.forms
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ProbeScores":
        if data.get("version") != SCORES_VERSION:
            raise ValueError(f"unsupported scores version {data.get('version')!r} (expected {SCORES_VERSION})")
        forms = data.get("forms", "prefixed")
        if forms not in PROMPT_FORMS:
            raise ValueError(f"unknown prompt forms {forms!r} (expected one of {', '.join(PROMPT_FORMS)})")
        return cls(tuple(EditScores.from_json(e) for e in data["edits"]), forms)

    @classmethod
    def loads(cls, text: str) -> "ProbeScores":
        return cls.from_json(json.loads(text))

"""Probe scores cached per (model state, probe set) in ``.kvc/cache/``, outside git.

A commit's weights never change, so the scores of a probe set at a commit never do
either: ``kvc log --metrics``, ``kvc eval`` and ``kvc eval --history`` re-summarise cached
scores without loading a model. Pre-edit scores are keyed by the base fingerprint. Files
are written atomically; an unreadable one is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.eval.scores import ProbeScores
from kedit_vc.fsio import atomic_write_text

if TYPE_CHECKING:
    from kedit_vc.store import Store

CACHE_FORMAT = "kvc-scores/1"


def probe_set_hash(requests: Sequence[EditRequest]) -> str:
    """sha256 of the requests' ids and probes, in order (the order scores come back in)."""
    payload = json.dumps([[r.edit_id, [p.to_json() for p in r.probes]] for r in requests], sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ScoreCache:
    """Scores by (state, probe set); ``state`` is a commit sha or ``base:<fingerprint>``.

    ``variant`` names what was scored beyond the teacher-forced prefixed scores (prompt
    forms, generations); "" is the plain kind, whose keys are those of earlier versions.
    """

    def __init__(self, store: "Store", variant: str = "") -> None:
        self.folder = store.paths.kvc / "cache" / "scores"
        self.variant = variant

    def _path(self, state: str, requests: Sequence[EditRequest]) -> Path:
        text = f"{CACHE_FORMAT}\0{state}\0{probe_set_hash(requests)}" + (f"\0{self.variant}" if self.variant else "")
        key = hashlib.sha256(text.encode()).hexdigest()
        return self.folder / key[:2] / f"{key}.json"

    def get(self, state: str, requests: Sequence[EditRequest]) -> ProbeScores | None:
        path = self._path(state, requests)
        try:
            return ProbeScores.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, state: str, requests: Sequence[EditRequest], scores: ProbeScores) -> None:
        path = self._path(state, requests)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, scores.dumps())  # beside the target: the writer lock sweeps tmp/

"""What a commit records about itself, and what the store records about its base model.

Both are sorted JSON. The manifest lets ``kvc fsck`` and ``kvc show`` answer "what is this
commit, made how, from what" without running anything.

Manifest (``manifest.json``), format_version 1::

    {"format": "kvc-commit", "format_version": 1, "tool_version": "0.1.0",
     "op": "init" | "edit" | "revert" | "squash" | "merge",
     "parent": "<sha>" | null,
     "merge_parent": "<sha>",   (only in a merge: its second parent, the branch merged in)
     "base": {"model": "<ref>", "fingerprint": "<fingerprint>"},
     "method": "rome" | null, "hparams": {...}, "edit_ids": [...], "timings": {"edit_s": 1.2},
     "spec_name": "demo.kedit" | null,
     "delta": {"hash": "<sha256>", "storage": "git" | "object", "bytes": 8600} | null,
     "keys": {"layers": [4]} | null,
     "carried": {"names": [...], "hash": "<sha256>"},   (only when the commit carries state)
     "patches": [{"kind": "codebook", "file": "patch.0.codebook.safetensors", "hash": "<sha256>",
                  "bytes": 123, "summary": {...}}],   (only when the commit has non-delta patches)
     "reverts": "<sha>" | null,
     "squash": {"base": "<sha>", "tip": "<sha>", "commits": [...], "kept_at": "refs/kvc/squashed/<sha>"} | null,
     "extra": {...}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from kedit_vc import __version__

if TYPE_CHECKING:
    import torch

    from kedit_vc.delta import Delta

MANIFEST_FORMAT = "kvc-commit"
MANIFEST_VERSION = 1
STORE_FORMAT = "kvc-store"
STORE_VERSION = 1
OPS = ("init", "edit", "revert", "squash", "merge")
REQUIRED_KEYS = ("format", "format_version", "tool_version", "op", "parent", "base", "delta")

#: Dense delta files larger than this go to the objects folder instead of git.
DEFAULT_LARGE_DELTA_BYTES = 8 * 1024 * 1024


def dumps(data: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, indented, newline-terminated."""
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


@dataclass(frozen=True)
class StoreConfig:
    """How to load the base model (never the weights themselves) and storage settings."""

    model_ref: str
    fingerprint: str
    large_delta_bytes: int | None = DEFAULT_LARGE_DELTA_BYTES

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STORE_FORMAT,
            "format_version": STORE_VERSION,
            "model": {"ref": self.model_ref, "fingerprint": self.fingerprint},
            "large_delta_bytes": self.large_delta_bytes,
            "created_with": __version__,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "StoreConfig":
        if data.get("format") != STORE_FORMAT or data.get("format_version") != STORE_VERSION:
            raise ValueError(f"not a {STORE_FORMAT} v{STORE_VERSION} config")
        return cls(data["model"]["ref"], data["model"]["fingerprint"], data.get("large_delta_bytes"))


@dataclass(frozen=True)
class CommitInput:
    """Everything a caller (``kedit_vc.ops``) hands the store to record one commit.

    ``delta``: the weight change (None for a revert: the store writes the exact inverse
    of ``reverts``' delta itself). ``plan``: ``Plan.to_json()``. ``keys``: layer -> keys
    [n, d_in] written by the edit, for history-aware editors. ``carried``: name -> tensor,
    this commit's additive contribution to carried method state (see ``carried``; a
    revert's is computed by the store, a squash's defaults to its range's sum); none
    writes no file. ``patches``: non-delta patches (``kedit_vc.patches``: a codebook...),
    oldest first, stored by kind beside the delta (a revert's are its target's, copied by
    the store: they are live exactly when the revert is, i.e. when it re-applies a reverted
    revert). ``squash_range``: (base, tip), the commits after ``base`` up to
    ``tip`` that a squash replaces. ``merge_parent``: a merge's second parent (the tip
    of the branch merged in); the first is HEAD, and the delta takes HEAD's weights to
    the merge's (the store adds it like an edit's).
    """

    message: str
    delta: "Delta | None" = None
    op: str = "edit"
    spec_text: str | None = None
    spec_name: str | None = None
    plan: Mapping[str, Any] | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    method: str | None = None
    hparams: Mapping[str, Any] = field(default_factory=dict)
    edit_ids: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    keys: "Mapping[int, torch.Tensor] | None" = None
    reverts: str | None = None
    squash_range: tuple[str, str] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    carried: "Mapping[str, torch.Tensor]" = field(default_factory=dict)
    merge_parent: str | None = None
    patches: tuple[Any, ...] = ()


def build_manifest(
    payload: CommitInput,
    *,
    parent: str | None,
    config: StoreConfig,
    delta: Mapping[str, Any] | None,
    squash: Mapping[str, Any] | None = None,
    patches: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "tool_version": __version__,
        "op": payload.op,
        "parent": parent,
        "base": {"model": config.model_ref, "fingerprint": config.fingerprint},
        "method": payload.method,
        "hparams": dict(payload.hparams),
        "edit_ids": list(payload.edit_ids),
        "timings": dict(payload.timings),
        "spec_name": payload.spec_name,
        "delta": dict(delta) if delta is not None else None,
        "keys": {"layers": sorted(int(k) for k in payload.keys)} if payload.keys else None,
        "reverts": payload.reverts,
        "squash": dict(squash) if squash is not None else None,
        "extra": dict(payload.extra),
    }
    if payload.merge_parent is not None:  # absent otherwise, like carried
        manifest["merge_parent"] = payload.merge_parent
    if payload.carried:  # absent otherwise: commits without carried state keep their bytes
        from .carried import manifest_entry

        manifest["carried"] = manifest_entry(payload.carried)
    if patches:  # absent otherwise: delta-only commits keep their bytes
        manifest["patches"] = [dict(p) for p in patches]
    return manifest


def manifest_problems(manifest: Any) -> list[str]:
    """What is wrong with a parsed manifest (empty when it is well-formed)."""
    if not isinstance(manifest, dict):
        return ["manifest is not a JSON object"]
    problems = [f"manifest lacks {key!r}" for key in REQUIRED_KEYS if key not in manifest]
    if problems:
        return problems
    if manifest["format"] != MANIFEST_FORMAT or manifest["format_version"] != MANIFEST_VERSION:
        problems.append(f"manifest format {manifest['format']!r} v{manifest['format_version']!r} is not supported")
    op = manifest["op"]
    if op not in OPS:
        problems.append(f"unknown op {op!r}")
    if (op == "init") != (manifest["delta"] is None):
        problems.append("an init commit has no delta and every other commit has one")
    if op == "revert" and not manifest.get("reverts"):
        problems.append("a revert does not name the commit it reverts")
    if op == "squash" and not isinstance(manifest.get("squash"), dict):
        problems.append("a squash does not record its range")
    if (op == "merge") != bool(manifest.get("merge_parent")):
        problems.append("a merge names its second parent (merge_parent) and no other commit does")
    delta = manifest["delta"]
    stored = isinstance(delta, dict) and delta.get("storage") in ("git", "object") and delta.get("hash")
    if delta is not None and not stored:
        problems.append("manifest's delta entry lacks hash or storage")
    carried = manifest.get("carried")
    if carried is not None and not (isinstance(carried, dict) and isinstance(carried.get("names"), list)
                                    and carried.get("hash")):
        problems.append("manifest's carried entry lacks names or hash")
    patches = manifest.get("patches")
    if patches is not None and not (isinstance(patches, list) and all(
            isinstance(p, dict) and p.get("kind") and p.get("file") and p.get("hash") for p in patches)):
        problems.append("manifest's patches entry is not a list of {kind, file, hash}")
    return problems

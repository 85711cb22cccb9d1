"""What reading a commit gives back: its manifest and files, the delta loaded on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    import torch

    from kedit_vc.delta import Delta


@dataclass(frozen=True)
class CommitRecord:
    """One commit of the store.

    ``manifest`` is the parsed manifest.json (see ``manifest``); ``plan`` the stored
    ``Plan.to_json()``; ``delta()`` loads and verifies the delta against the manifest's
    hash (None for the initial commit); ``keys()`` gives layer -> keys [n, d_in] or {};
    ``carried()`` the commit's carried method state, name -> tensor, or {} (see ``carried``);
    ``patches()`` its non-delta patches (codebooks...), or [].
    """

    sha: str
    parents: tuple[str, ...]
    message: str
    time: int
    author: str
    manifest: Mapping[str, Any]
    spec_text: str | None
    plan: Mapping[str, Any] | None
    metrics: Mapping[str, Any]
    files: tuple[str, ...]
    load_delta: Callable[[], "Delta | None"] = field(repr=False, compare=False)
    load_keys: Callable[[], "dict[int, torch.Tensor]"] = field(repr=False, compare=False)
    load_carried: Callable[[], "dict[str, torch.Tensor]"] = field(default=dict, repr=False, compare=False)
    load_patches: Callable[[], list[Any]] = field(default=list, repr=False, compare=False)

    @property
    def short(self) -> str:
        return self.sha[:10]

    @property
    def op(self) -> str:
        return self.manifest["op"]

    @property
    def parent(self) -> str | None:
        return self.manifest.get("parent")

    @property
    def method(self) -> str | None:
        return self.manifest.get("method")

    @property
    def edit_ids(self) -> tuple[str, ...]:
        return tuple(self.manifest.get("edit_ids") or ())

    @property
    def reverts(self) -> str | None:
        return self.manifest.get("reverts")

    @property
    def squash(self) -> Mapping[str, Any] | None:
        return self.manifest.get("squash")

    @property
    def delta_hash(self) -> str | None:
        delta = self.manifest.get("delta")
        return delta["hash"] if delta else None

    def delta(self) -> "Delta | None":
        return self.load_delta()

    def keys(self) -> "dict[int, torch.Tensor]":
        return self.load_keys()

    def carried(self) -> "dict[str, torch.Tensor]":
        return self.load_carried()

    def patches(self) -> list[Any]:
        """The commit's non-delta patches (``kedit_vc.patches``), verified, oldest first."""
        return self.load_patches()

    @property
    def patch_kinds(self) -> tuple[str, ...]:
        return tuple(p["kind"] for p in self.manifest.get("patches") or ())

"""``SideMemoryPatch``: what one commit adds to the side memory at one module, as plain data.

A side memory (WISE, Wang et al. 2024, arXiv 2405.14768) is a copy ``W_side`` [d_out, d_in]
of one MLP value matrix (the down-projection ``W_main``) that edits are written into while
``W_main`` stays as it is. A router sends an input to the side memory when its activation
``‖A(x)·(W_side − W_main)ᵀ‖`` (mean over tokens) reaches the threshold ``ε = act_ratio ·
min`` over the edits the memory holds of their activation on their own prompts.

Only the difference ``D = W_side − W_main`` matters (both to the router and to the output,
``A(x)·W_sideᵀ = A(x)·W_mainᵀ + A(x)·Dᵀ``), so that is what is stored, and per commit only
the part the commit trained: the live ``D`` is the sum of the live patches' increments in
commit order (``live.live_memory``). Reverting the newest commit restores the memory before
it bit for bit; reverting an older one takes out exactly what it added, as a weight delta's
revert does. ``D`` follows the main weight: a ROME edit of the same matrix moves ``W_side``
with it.

Storage: WISE trains the side memory through a fixed random gradient mask (``mask_ratio`` of
the entries, one mask per knowledge shard), so an increment is *sparse* by construction and
not low-rank (the mask breaks the rank of the gradients). The file holds the mask as packed
bits (``mask``: uint8 [⌈d_out·d_in/8⌉], row-major over [d_out, d_in], bit i at byte i//8,
bit i%8) and the increment's values at the masked entries in that order (``values``:
float32 [nnz]): at mask ratio 0.2 that is 0.2·4 + 1/8 = 0.93 bytes per entry against 4 for
the dense matrix. ``activations`` (float32 [n]): the in-scope activation of each edit this
commit added, in order (the router's threshold comes from these).

Knowledge shards (WISE §2.3.2): each patch names the shard it was trained in (``shard``, a
number counted along the history) and the merge group of that shard (``group``). A shard has
its own random gradient mask and starts from ``W_main`` (``D = 0``); its edits continue it
until it holds ``shard_size`` of them; the shards of one group are TIES-merged into the side
memory (``merge``; with the memory merged so far weighted ``memory_weight`` from the second
group on). The patch also records the merge's trim ``density``. How the live shards make one
memory is ``live.live_memory``'s job.

File: safetensors (``mask``, ``values``, ``activations``) whose metadata holds ``format`` =
``kvc-sidememory``, ``format_version`` (2; version 1 files, one shard and no merge, are still
read), ``content_hash`` and ``info`` (JSON: module, dims, edit ids, act_ratio, mask_ratio,
edits held before, shard, group, shard_size, density, memory_weight, meta; and ``retrieve``
with ``shards_per_merge`` when on). The content hash
covers the canonical JSON and the tensors' bytes, so a changed bit anywhere is refused on load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import torch

from kedit_vc.patches import envelope
from kedit_vc.patches.registry import PatchError

FORMAT = "kvc-sidememory"
FORMAT_VERSION = "2"
LEGACY_VERSION = "1"   # one shard, no merge (WISE-lite, session 6)
HASH_FORMAT = b"kvc-sidememory-hash/1\0"
TENSORS = ("activations", "mask", "values")
_BITS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """Bool ``mask`` (any shape, read row-major) -> uint8 [⌈numel/8⌉], bit i%8 of byte i//8."""
    flat = mask.detach().to("cpu", torch.bool).reshape(-1)
    padded = torch.zeros((flat.numel() + 7) // 8 * 8, dtype=torch.bool)
    padded[:flat.numel()] = flat
    return (padded.view(-1, 8).to(torch.uint8) * _BITS).sum(dim=1, dtype=torch.uint8)


def unpack_mask(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """The inverse of ``pack_mask``: bool [numel]."""
    bits = (packed.to(torch.uint8)[:, None] & _BITS) != 0   # [bytes, 8]
    return bits.reshape(-1)[:numel]


@dataclass(frozen=True, eq=False)
class SideMemoryPatch:
    """The side-memory increment one commit trained at ``module`` (see the module doc)."""

    module: str
    in_dim: int
    out_dim: int
    mask: torch.Tensor          # uint8 [⌈out_dim·in_dim/8⌉] packed bits
    values: torch.Tensor        # float32 [nnz]: the increment at the masked entries, row-major
    activations: torch.Tensor   # float32 [n]: each added edit's in-scope activation
    edit_ids: tuple[str, ...]
    act_ratio: float
    mask_ratio: float
    edits_before: int = 0       # edits the memory held before this commit
    meta: Mapping[str, str] = field(default_factory=dict)
    shard: int = 0              # the knowledge shard this increment was trained in
    group: int = 0              # the merge group of that shard
    shard_size: int = 0         # edits a shard holds before the next starts (0: a version-1 file)
    density: float = 1.0        # TIES trim density of the merge
    memory_weight: float = 0.6  # the merged memory's weight when a later group is merged into it
    retrieve: bool = False      # WISE-Retrieve: a memory per merge group, routed top-1 (live.retrieved)
    shards_per_merge: int = 0   # shards a merge group holds (read with retrieve; 0: not recorded)

    kind = "sidememory"

    def __post_init__(self) -> None:
        if self.in_dim < 1 or self.out_dim < 1:
            raise PatchError(f"side memory dims must be >= 1, got {self.in_dim}x{self.out_dim}")
        numel = self.in_dim * self.out_dim
        if not isinstance(self.mask, torch.Tensor) or tuple(self.mask.shape) != ((numel + 7) // 8,):
            raise PatchError(f"side memory mask must hold {(numel + 7) // 8} bytes for {self.out_dim}x{self.in_dim}")
        mask = self.mask.detach().to("cpu", torch.uint8).contiguous()
        object.__setattr__(self, "mask", mask)
        nnz = int(unpack_mask(mask, numel).sum())
        if numel % 8 and int(mask[-1]) >> (numel % 8):
            raise PatchError("side memory mask has bits set past its last entry")
        for name, shape in (("values", (nnz,)), ("activations", (len(self.edit_ids),))):
            tensor = getattr(self, name)
            if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
                got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
                raise PatchError(f"side memory {name} must have shape {shape}, got {got}")
            object.__setattr__(self, name, tensor.detach().to("cpu", torch.float32).contiguous())
        if not bool(torch.isfinite(self.values).all()) or not bool(torch.isfinite(self.activations).all()):
            raise PatchError("side memory values and activations must be finite")
        if not 0 < self.act_ratio <= 1 or not 0 < self.mask_ratio <= 1 or self.edits_before < 0:
            raise PatchError("side memory act_ratio and mask_ratio must lie in (0, 1], edits_before >= 0")
        if self.shard < 0 or self.group < 0 or self.group > self.shard or self.shard_size < 0:
            raise PatchError(f"side memory shard {self.shard} / group {self.group} / shard_size {self.shard_size} "
                             "must be >= 0, with the group at most the shard")
        if not 0 < self.density <= 1 or not 0 < self.memory_weight < 1:
            raise PatchError("side memory density must lie in (0, 1] and memory_weight in (0, 1)")
        if self.retrieve and (self.shards_per_merge < 1 or self.shard_size < 1):
            raise PatchError("a WISE-Retrieve side memory must record shard_size and shards_per_merge >= 1")
        if len(set(self.edit_ids)) != len(self.edit_ids):
            raise PatchError("side memory edit ids must be distinct")
        object.__setattr__(self, "edit_ids", tuple(str(i) for i in self.edit_ids))
        object.__setattr__(self, "act_ratio", float(self.act_ratio))
        object.__setattr__(self, "mask_ratio", float(self.mask_ratio))
        object.__setattr__(self, "density", float(self.density))
        object.__setattr__(self, "memory_weight", float(self.memory_weight))
        object.__setattr__(self, "retrieve", bool(self.retrieve))
        object.__setattr__(self, "shards_per_merge", int(self.shards_per_merge))
        object.__setattr__(self, "meta", MappingProxyType(dict(sorted(self.meta.items()))))

    @classmethod
    def from_dense(cls, module: str, increment: torch.Tensor, mask: torch.Tensor, activations: torch.Tensor,
                   edit_ids: tuple[str, ...], act_ratio: float, mask_ratio: float, edits_before: int = 0,
                   meta: Mapping[str, str] | None = None, **schedule: Any) -> "SideMemoryPatch":
        """The patch of ``increment`` [d_out, d_in] trained through bool ``mask`` [d_out, d_in]
        (the increment must be zero outside the mask: that is what makes it sparse)."""
        increment = increment.detach().to("cpu", torch.float32)
        mask = mask.detach().to("cpu", torch.bool)
        if increment.shape != mask.shape or increment.dim() != 2:
            raise PatchError(f"increment {tuple(increment.shape)} and mask {tuple(mask.shape)} must be one matrix")
        if bool((increment[~mask] != 0).any()):
            raise PatchError("side memory increment is nonzero outside its gradient mask")
        out_dim, in_dim = increment.shape
        return cls(module, int(in_dim), int(out_dim), pack_mask(mask), increment[mask], activations,
                   tuple(edit_ids), act_ratio, mask_ratio, edits_before, dict(meta or {}), **schedule)

    def __repr__(self) -> str:
        return (f"SideMemoryPatch({self.module}, shard {self.shard}, +{len(self.edit_ids)} edits, "
                f"{self.values.numel()} of {self.in_dim * self.out_dim} entries)")

    # -- content --------------------------------------------------------------------

    def bool_mask(self) -> torch.Tensor:
        """The gradient mask, bool [d_out, d_in]."""
        return unpack_mask(self.mask, self.in_dim * self.out_dim).view(self.out_dim, self.in_dim)

    def increment(self) -> torch.Tensor:
        """The increment as a dense float32 [d_out, d_in] matrix (zero outside the mask)."""
        dense = torch.zeros(self.out_dim * self.in_dim)
        dense[unpack_mask(self.mask, dense.numel())] = self.values
        return dense.view(self.out_dim, self.in_dim)

    def threshold(self) -> float:
        """``act_ratio`` times the least activation of this commit's edits (inf if none)."""
        return self.act_ratio * float(self.activations.min()) if self.activations.numel() else float("inf")

    @property
    def version(self) -> str:
        """The file format version this patch is written in (1: one shard, no merge)."""
        return LEGACY_VERSION if self.shard_size == 0 else FORMAT_VERSION

    def info(self) -> dict[str, Any]:
        """The JSON part of the file (everything but the tensors)."""
        info = {"module": self.module, "in_dim": self.in_dim, "out_dim": self.out_dim,
                "edit_ids": list(self.edit_ids), "act_ratio": self.act_ratio, "mask_ratio": self.mask_ratio,
                "edits_before": self.edits_before, "meta": dict(self.meta)}
        if self.version == LEGACY_VERSION:
            return {**info, "shards": 1}
        info = {**info, "shard": self.shard, "group": self.group, "shard_size": self.shard_size,
                "density": self.density, "memory_weight": self.memory_weight}
        # Written only when on, so WISE-Merge files (and their hashes) are as before.
        return {**info, "retrieve": True, "shards_per_merge": self.shards_per_merge} if self.retrieve else info

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"activations": self.activations, "mask": self.mask, "values": self.values}

    def content_hash(self) -> str:
        """sha256 of the canonical JSON info, then each tensor's name, dtype, shape and bytes."""
        return envelope.tensors_hash(HASH_FORMAT, self.info(), self.tensors(), dtypes=True)

    def to_bytes(self) -> bytes:
        return envelope.encode(FORMAT, self.version, self.info(), self.tensors(), self.content_hash())

    @classmethod
    def from_bytes(cls, data: bytes, expected_hash: str | None = None, source: str = "sidememory"
                   ) -> "SideMemoryPatch":
        """Parse and verify a side-memory file; ``PatchError`` when malformed, altered or unexpected."""
        try:
            try:
                info, tensors, recorded = envelope.decode(data, FORMAT, FORMAT_VERSION, TENSORS)
                schedule = {name: info[name] for name in ("shard", "group", "shard_size", "density",
                                                          "memory_weight")}
                if info.get("retrieve", False):
                    schedule.update(retrieve=True, shards_per_merge=int(info["shards_per_merge"]))
                if schedule["shard_size"] < 1:
                    raise ValueError(f"shard_size must be >= 1 in a version {FORMAT_VERSION} file")
            except ValueError as newer:
                if f"v{FORMAT_VERSION} file" not in str(newer):
                    raise
                info, tensors, recorded = envelope.decode(data, FORMAT, LEGACY_VERSION, TENSORS)
                if info.get("shards", 1) != 1:
                    raise ValueError(f"a version {LEGACY_VERSION} file holds one shard, not {info['shards']}") from None
                schedule = {}
            if tensors["mask"].dtype != torch.uint8:
                raise ValueError(f"mask must be uint8, got {tensors['mask'].dtype}")
            patch = cls(module=str(info["module"]), in_dim=int(info["in_dim"]), out_dim=int(info["out_dim"]),
                        mask=tensors["mask"], values=tensors["values"], activations=tensors["activations"],
                        edit_ids=tuple(info["edit_ids"]), act_ratio=float(info["act_ratio"]),
                        mask_ratio=float(info["mask_ratio"]), edits_before=int(info["edits_before"]),
                        meta=dict(info["meta"]), **schedule)
        except PatchError as error:
            raise PatchError(f"{source} was altered or is corrupt (not a valid kvc side memory: {error}); "
                             "restore it from the store or re-run the edit") from None
        except Exception as error:  # noqa: BLE001 - safetensors, json and validation errors alike
            raise PatchError(f"{source} is not a valid kvc side-memory file: {error}") from None
        envelope.check_hash(patch.content_hash(), recorded, expected_hash, source, "side memory")
        return patch

    # -- against a model ------------------------------------------------------------

    def check_model(self, model: torch.nn.Module) -> None:
        """Refuse a model without ``module`` or whose module's widths are not the memory's."""
        dims = linear_dims(model, self.module)
        if dims != (self.in_dim, self.out_dim):
            raise PatchError(f"a side memory at {self.module} maps width {self.in_dim} to {self.out_dim}, but this "
                             f"model's module maps {dims[0]} to {dims[1]}; was it made for another model?")

    def describe(self) -> dict[str, Any]:
        """What ``kvc show`` / ``kvc diff`` print: module, memory size, shards, threshold, edits."""
        nnz, numel = self.values.numel(), self.in_dim * self.out_dim
        stored = self.mask.numel() + 4 * nnz + 4 * self.activations.numel()
        held = self.edits_before + len(self.edit_ids)
        shard = (f"shard {self.shard} (merge group {self.group}, {self.shard_size} edits a shard, TIES density "
                 f"{self.density:g})" if self.shard_size else "1 shard (version 1: no merge)")
        if self.retrieve:
            shard += f", WISE-Retrieve (a memory per group of {self.shards_per_merge} shards)"
        summary = (f"side memory at {self.module}: +{len(self.edit_ids)} edit(s), {held} held, {shard}, "
                   f"threshold {self.threshold():.4g} ({self.act_ratio:g} x least activation), "
                   f"{nnz} of {numel} entries trained (sparse, {stored / 1e6:.2f} MB vs {4 * numel / 1e6:.2f} MB "
                   "dense)")
        return {"kind": self.kind, "module": self.module, "in_dim": self.in_dim, "out_dim": self.out_dim,
                "edits_added": len(self.edit_ids), "edits_held": held, "shard": self.shard, "group": self.group,
                "shard_size": self.shard_size, "density": self.density, "memory_weight": self.memory_weight,
                "retrieve": self.retrieve, "shards_per_merge": self.shards_per_merge,
                "threshold": round(self.threshold(), 6), "act_ratio": self.act_ratio,
                "activations": [round(float(a), 4) for a in self.activations], "mask_ratio": self.mask_ratio,
                "entries_trained": nnz, "entries": numel, "storage": "sparse", "stored_bytes": stored,
                "dense_bytes": 4 * numel, "summary": summary}


def linear_dims(model: torch.nn.Module, path: str) -> tuple[int, int]:
    """(input width, output width) of the linear module at ``path``; ``PatchError`` if none."""
    try:
        module = model.get_submodule(path)
    except AttributeError:
        raise PatchError(f"this model has no module {path!r}; was the patch made for another model?") from None
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    weight = getattr(module, "weight", None)
    if hasattr(module, "nf") and isinstance(weight, torch.Tensor) and weight.dim() == 2:  # GPT-2 Conv1D [in, out]
        return int(weight.shape[0]), int(weight.shape[1])
    raise PatchError(f"module {path!r} is not a linear layer a side memory can copy")

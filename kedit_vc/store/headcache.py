"""HEAD's weights in one file: the live deltas at one commit, summed, kept beside the history.

Materialising a commit from the history reads every live commit's delta, so its cost grows
with the history (about 1 s per 1000 commits). The store keeps the sum for HEAD in
``.kvc/cache/head.safetensors`` so that a checkout of HEAD reads one file. It is only a
cache: outside git (never pushed or fetched), rebuilt from the history whenever it is
missing, unreadable, or not for the commit asked for, so deleting it changes nothing but
speed.

The file is safetensors (never pickle), its tensors named as in delta files
(``<parameter>::left``/``right``/``value``), memory-mapped on load. Its metadata says what
it sums and carries a CRC-32 of everything else (metadata, names, dtypes, shapes, bytes),
recomputed on load, so a torn or damaged file is refused. A CRC, not the sha256 delta
files carry: it guards against accidents, which is what a local cache meets, and costs
5 ms for a 17 MB cache where sha256 costs 11, half of what a checkout now adds to a load.
The metadata:

* ``commit``: the commit whose live deltas it sums (the key). A commit's sha names its whole
  history, so a key equal to the commit asked for means the content is for that commit;
* ``fingerprint``: the base model's;
* ``live``: the live commits, oldest first (a revert tells from it whether its target is live
  without reading the history);
* ``owners``: per parameter, the live commits whose updates it holds, in order, with the
  columns each owns while the parameter is factored (0 once it is dense).

Form and exactness. A parameter stays factored, every live update's factors concatenated in
live order, while that is smaller than its dense matrix and of rank at most
``MAX_FACTORED_RANK``: these are exactly the matrices ``materialize`` multiplies for the
full read, so the weights are bit-identical to it. Past that, or once a dense update
joins, it is one dense sum in the updates' dtype (the file then holds at most one dense
matrix per touched parameter, whatever the history's length), advanced
by adding each new update (a revert adds its target's inverse). A dense sum then differs
from a fresh one by the rounding of those additions, at most about n/2 ulp of the largest
partial sum after n steps: the same drift as adding the deltas to the weights one by one
(the naive re-application). ``TOLERANCE`` is what ``kvc fsck`` accepts between the cache and
a fresh sum; ``kvc fsck --repair`` rebuilds the cache from the history.

``HeadCache`` owns the cache of one store. The store advances it after each write, under
the writer lock, once the branch ref has moved (see ``Store.write_commit``): an edit, or a
revert of a commit that is not live, adds its delta; a revert of a live commit drops the
target's columns (or adds its inverse to a dense sum); a squash, or a cache that is not for
the parent, is rebuilt from the history.

Branches: ``kvc switch`` parks the cache of the branch it leaves under
``cache/parked/<commit>.safetensors`` (a rename) and restores the one of the commit it
enters if one is parked there, so going back and forth between branches reads one file
each way. At most ``PARKED_LIMIT`` are kept (the oldest go); like the cache itself they
are checked on load and ignored when unusable.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from kedit_vc.delta import Delta, DeltaError, Dense, LowRank, Update
from kedit_vc.delta.hashing import tensor_bytes
from kedit_vc.delta.io import SEPARATOR, group_parts, storable
from kedit_vc.delta.materialize import sum_updates
from kedit_vc.delta.updates import product_dtype
from kedit_vc.errors import KvcError, StoreError
from kedit_vc.fsio import atomic_write_bytes

FORMAT = "kvc-head-cache"
FORMAT_VERSION = "1"

#: ``max |cached - fresh| <= TOLERANCE * max(1, max |fresh|)`` per parameter (``kvc fsck``).
TOLERANCE = 1e-5

#: Past this rank a parameter's sum is kept dense: materialising rank R costs 2R flops per
#: weight, reading a dense sum 4 bytes (mapped and CRC-checked) per weight; on one CPU
#: core the two cross between rank ~70 and ~200. 128 keeps a matrix's first hundred-odd
#: edits factored: exact, and cheap to rewrite at each commit.
MAX_FACTORED_RANK = 128

#: Parked caches kept for other branches' heads (each at most one dense matrix per touched parameter).
PARKED_LIMIT = 4

Owner = tuple[str, int]  # (commit sha, columns it owns in a factored sum; 0 in a dense one)


@dataclass(frozen=True)
class HeadSum:
    """The live deltas at ``commit`` summed per parameter (``updates``), and who owns what."""

    commit: str
    fingerprint: str
    live: tuple[str, ...]
    updates: Mapping[str, Update]
    owners: Mapping[str, tuple[Owner, ...]]

    def delta(self) -> Delta:
        """The sum as one delta: the commit's weights = base + it."""
        return Delta(dict(self.updates))

    def to_bytes(self) -> bytes:
        """The safetensors bytes of the cache, its CRC-32 in the metadata."""
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "commit": self.commit,
            "fingerprint": self.fingerprint,
            "live": json.dumps(list(self.live)),
            "owners": json.dumps({name: [list(o) for o in owners] for name, owners in sorted(self.owners.items())}),
        }
        tensors = storable({f"{name}{SEPARATOR}{part}": t
                            for name, u in self.updates.items() for part, t in u.parts().items()})
        return st_save(tensors, metadata={**meta, "crc32": _checksum(meta, tensors)})

    @classmethod
    def from_file(cls, path: Path) -> "HeadSum":
        """Read (memory-mapped) and verify a cache file; raises ``StoreError`` when unusable."""
        source = f"the HEAD cache {path}"
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = dict(handle.metadata() or {})
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except OSError:
            raise
        except Exception as error:  # noqa: BLE001 - safetensors' errors: torn, truncated, not safetensors
            raise StoreError(f"{source} is unreadable ({error})") from None
        recorded = meta.pop("crc32", None)
        if recorded != _checksum(meta, tensors):
            raise StoreError(f"{source} is damaged: its CRC-32 does not match its content")
        try:
            if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"not a {FORMAT} v{FORMAT_VERSION} file")
            live = tuple(json.loads(meta["live"]))
            owners = {name: tuple((str(sha), int(cols)) for sha, cols in items)
                      for name, items in json.loads(meta["owners"]).items()}
            state = cls(meta["commit"], meta["fingerprint"], live, group_parts(tensors), owners)
            state.check()
        except (KeyError, TypeError, ValueError) as error:
            raise StoreError(f"{source} is not a valid HEAD cache ({error})") from None
        return state

    def check(self) -> None:
        """Raise ValueError unless owners and updates agree (names, live commits, columns)."""
        if set(self.owners) != set(self.updates):
            raise ValueError("owners and updates name different parameters")
        live = set(self.live)
        for name, owners in self.owners.items():
            shas = [sha for sha, _ in owners]
            if not owners or len(set(shas)) != len(shas) or not live.issuperset(shas):
                raise ValueError(f"the owners of {name} are not distinct live commits")
            update = self.updates[name]
            if isinstance(update, LowRank) and sum(cols for _, cols in owners) != update.rank:
                raise ValueError(f"the owners of {name} do not account for its {update.rank} columns")


def _checksum(meta: Mapping[str, str], tensors: Mapping[str, torch.Tensor]) -> str:
    """CRC-32 of the metadata, then of each tensor's name, dtype, shape and bytes, by name."""
    crc = zlib.crc32(json.dumps(dict(meta), sort_keys=True).encode())
    for key in sorted(tensors):
        tensor = tensors[key]
        crc = zlib.crc32(f"{key}|{tensor.dtype}|{list(tensor.shape)}".encode(), crc)
        crc = zlib.crc32(tensor_bytes(tensor), crc)
    return f"{crc:08x}"


def _fits_factored(update: Update) -> bool:
    """Whether to keep ``update`` factored: smaller than its dense matrix, and of rank at most
    ``MAX_FACTORED_RANK``."""
    if not isinstance(update, LowRank):
        return False
    rows, cols = update.shape
    return update.rank <= MAX_FACTORED_RANK and update.rank * (rows + cols) <= rows * cols


def _check_shape(name: str, a: Update, b: Update) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise DeltaError(f"deltas disagree on the shape of {name!r}: {tuple(a.shape)} and {tuple(b.shape)}")


def _dense_sum(a: Update, b: Update) -> Dense:
    dtype = product_dtype(torch.promote_types(a.dtype, b.dtype))  # 16-bit factors: a float32 sum
    return Dense(a.dense().to(dtype) + b.dense().to(dtype))


def _added(name: str, current: Update | None, owners: tuple[Owner, ...], sha: str, update: Update
           ) -> tuple[Update, tuple[Owner, ...]]:
    """``current`` (owned by ``owners``) plus ``sha``'s ``update``."""
    if current is None:
        if isinstance(update, LowRank) and _fits_factored(update):
            return update, ((sha, update.rank),)
        return Dense(update.dense()), ((sha, 0),)
    _check_shape(name, current, update)
    if isinstance(current, LowRank) and isinstance(update, LowRank):
        dtype = torch.promote_types(current.dtype, update.dtype)
        merged = LowRank(torch.cat([current.left.to(dtype), update.left.to(dtype)], dim=1),
                         torch.cat([current.right.to(dtype), update.right.to(dtype)], dim=1))
        if _fits_factored(merged):
            return merged, owners + ((sha, update.rank),)
        return Dense(merged.dense()), tuple((s, 0) for s, _ in owners) + ((sha, 0),)
    return _dense_sum(current, update), tuple((s, 0) for s, _ in owners) + ((sha, 0),)


def _reverted(name: str, current: Update | None, owners: tuple[Owner, ...], target: str, inverse: Update
              ) -> tuple[Update | None, tuple[Owner, ...]]:
    """``current`` without ``target``'s update (whose exact inverse is ``inverse``)."""
    shas = [sha for sha, _ in owners]
    if current is None or target not in shas:
        raise StoreError(f"the HEAD cache does not hold {target[:10]}'s update of {name}")
    rest = tuple(o for o in owners if o[0] != target)
    if not rest:
        return None, ()
    _check_shape(name, current, inverse)
    if isinstance(current, LowRank):  # drop the target's columns: exact
        index = shas.index(target)
        start = sum(cols for _, cols in owners[:index])
        stop = start + owners[index][1]
        keep = torch.cat([torch.arange(0, start), torch.arange(stop, current.rank)])
        return LowRank(current.left[:, keep], current.right[:, keep]), rest
    return _dense_sum(current, inverse), rest


def empty(commit: str, fingerprint: str) -> HeadSum:
    return HeadSum(commit, fingerprint, (), {}, {})


def added(state: HeadSum, sha: str, delta: Delta) -> HeadSum:
    """The sum after commit ``sha`` adds ``delta`` (an edit, or a revert of a commit not live)."""
    updates, owners = dict(state.updates), dict(state.owners)
    for name, update in delta.updates.items():
        updates[name], owners[name] = _added(name, updates.get(name), owners.get(name, ()), sha, update)
    return replace(state, commit=sha, live=state.live + (sha,), updates=updates, owners=owners)


def reverted(state: HeadSum, sha: str, target: str, inverse: Delta) -> HeadSum:
    """The sum after commit ``sha`` reverts the live commit ``target`` (its delta is ``inverse``)."""
    if target not in state.live:
        raise StoreError(f"{target[:10]} is not live in the HEAD cache")
    updates, owners = dict(state.updates), dict(state.owners)
    for name, update in inverse.updates.items():
        kept, kept_owners = _reverted(name, updates.get(name), owners.get(name, ()), target, update)
        if kept is None:
            updates.pop(name, None)
            owners.pop(name, None)
        else:
            updates[name], owners[name] = kept, kept_owners
    live = tuple(s for s in state.live if s != target)
    return replace(state, commit=sha, live=live, updates=updates, owners=owners)


def build(commit: str, fingerprint: str, live: Iterable[tuple[str, Delta]]) -> HeadSum:
    """The sum of the live deltas ``(sha, delta)``, oldest first, from scratch.

    Each parameter's factors are concatenated once (not commit by commit); the result has the
    form ``added`` would reach: factored while that is smaller than dense, else one dense sum
    (``materialize``'s: one product over all factors plus the dense updates).
    """
    pairs = list(live)
    by_name: dict[str, list[tuple[str, Update]]] = {}
    for sha, delta in pairs:
        for name, update in delta.updates.items():
            by_name.setdefault(name, []).append((sha, update))
    updates: dict[str, Update] = {}
    owners: dict[str, tuple[Owner, ...]] = {}
    for name, items in sorted(by_name.items()):
        parts = [u for _, u in items]
        if all(isinstance(u, LowRank) for u in parts):
            for u in parts[1:]:
                _check_shape(name, parts[0], u)
            dtype = parts[0].dtype
            for u in parts[1:]:
                dtype = torch.promote_types(dtype, u.dtype)
            merged = LowRank(torch.cat([u.left.to(dtype) for u in parts], dim=1),  # type: ignore[union-attr]
                             torch.cat([u.right.to(dtype) for u in parts], dim=1))  # type: ignore[union-attr]
            if _fits_factored(merged):
                updates[name], owners[name] = merged, tuple((sha, u.rank or 0) for sha, u in items)
                continue
        updates[name], owners[name] = Dense(sum_updates(name, parts)), tuple((sha, 0) for sha, _ in items)
    return HeadSum(commit, fingerprint, tuple(sha for sha, _ in pairs), updates, owners)


def load(path: Path) -> HeadSum:
    """Read and verify the cache file; raises ``KvcError`` (or ``OSError``) when it is unusable."""
    return HeadSum.from_file(path)


def read(path: Path) -> HeadSum | None:
    """The cache at ``path``, or None when it is missing or unusable (a checkout then rebuilds it)."""
    try:
        return load(path)
    except (KvcError, OSError):
        return None


def write(path: Path, state: HeadSum, tmp_dir: Path) -> None:
    """Replace the cache atomically. Not fsynced: after a power cut a torn file fails its hash
    check on load and is rebuilt, so durability would only cost each commit time."""
    state.check()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, state.to_bytes(), tmp_dir, sync=False)


def remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def differences(cached: HeadSum, fresh: HeadSum) -> list[str]:
    """How ``cached`` differs from ``fresh`` (a rebuild for the same commit), beyond ``TOLERANCE``."""
    problems = []
    if cached.live != fresh.live:
        problems.append(f"it lists {len(cached.live)} live commits, the history {len(fresh.live)}")
    for name in sorted(set(cached.updates) | set(fresh.updates)):
        if name not in cached.updates or name not in fresh.updates:
            problems.append(f"it {'lacks' if name in fresh.updates else 'has an extra'} update of {name}")
            continue
        a, b = cached.updates[name].dense(), fresh.updates[name].dense()
        if tuple(a.shape) != tuple(b.shape):
            problems.append(f"its update of {name} has shape {tuple(a.shape)}, the history's {tuple(b.shape)}")
            continue
        dtype = torch.promote_types(a.dtype, b.dtype)
        error = float((a.to(dtype) - b.to(dtype)).abs().max()) if a.numel() else 0.0
        scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
        if not error <= TOLERANCE * scale:  # also catches NaN
            problems.append(f"its update of {name} differs from the history's by up to {error:.3g}")
    return problems


class HeadCache:
    """The HEAD cache of one store: its file, and the sum last read or written (which stays
    valid for its own commit whatever HEAD is now).

    ``fingerprint()`` gives the store's base fingerprint and ``live_pairs(sha)`` the live
    ``(sha, delta)`` pairs at a commit, oldest first; both are asked at each use, so this
    object never holds history of its own. Writing is for callers that hold the writer lock.
    """

    def __init__(self, path: Path, tmp_dir: Path, fingerprint: Callable[[], str],
                 live_pairs: Callable[[str], Iterable[tuple[str, Delta]]]) -> None:
        self.path = path
        self._tmp_dir = tmp_dir
        self._fingerprint = fingerprint
        self._live_pairs = live_pairs
        self._state: HeadSum | None = None

    def for_commit(self, sha: str) -> HeadSum | None:
        """The cached sum if it is for commit ``sha`` and this base model, else None."""
        state = self._state
        if state is None or state.commit != sha:
            state = read(self.path)
        if state is None or state.commit != sha or state.fingerprint != self._fingerprint():
            return None
        self._state = state
        return state

    def sum_at(self, sha: str) -> tuple[HeadSum, bool]:
        """The sum at commit ``sha`` and whether it was built afresh (from the history)."""
        state = self.for_commit(sha)
        if state is not None:
            return state, False
        return build(sha, self._fingerprint(), self._live_pairs(sha)), True

    def save(self, state: HeadSum) -> None:
        """Remember ``state`` and write it as the cache file (under the writer lock)."""
        self._state = state
        write(self.path, state, self._tmp_dir)

    def rebuild(self, head: str) -> None:
        """Sum ``head``'s live deltas from the history and rewrite the cache."""
        self.save(build(head, self._fingerprint(), self._live_pairs(head)))

    def advance(self, old_head: str, new_head: str, op: str, delta: Delta, reverts: str | None) -> None:
        """The cache for ``new_head``: the one for ``old_head`` plus this write, or rebuilt
        (a squash, or a cache that is not for ``old_head``)."""
        state = self.for_commit(old_head)
        if state is None or op == "squash":
            self.rebuild(new_head)
        elif op == "revert" and reverts in state.live:
            assert reverts is not None
            self.save(reverted(state, new_head, reverts, delta))
        else:
            self.save(added(state, new_head, delta))

    def _parked(self, sha: str) -> Path:
        return self.path.parent / "parked" / f"{sha}.safetensors"

    def park(self, sha: str) -> None:
        """Move the cache aside if it is for commit ``sha`` (before HEAD leaves it; under the lock)."""
        if self.for_commit(sha) is None:
            return
        target = self._parked(sha)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, target)
        os.utime(target)  # the most recently parked is kept longest
        parked = sorted(target.parent.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        for old in parked[:-PARKED_LIMIT]:
            remove(old)

    def restore(self, sha: str) -> bool:
        """Make the cache the one parked for commit ``sha``; False when none (usable) is parked."""
        source = self._parked(sha)
        if not source.exists():
            return self.for_commit(sha) is not None
        os.replace(source, self.path)
        return self.for_commit(sha) is not None

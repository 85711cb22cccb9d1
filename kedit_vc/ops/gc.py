"""``kvc gc``: drop what no ref reaches, and caches for nothing.

Reachable means named by a ref: the branches, remote-tracking refs (a pending ``kvc merge``
reads them), tags, and the kept histories of squashes (``refs/kvc/squashed/*``) unless
``prune_squashed``. Under the writer lock:

1. quarantine refs a killed pull left (``refs/kvc/incoming/*``) are dropped;
2. with ``prune_squashed`` the kept histories are let go (and the store remembers it, so
   ``fsck`` no longer asks for them);
3. ``git gc --prune=now`` repacks what is reachable and deletes the rest;
4. large dense deltas in ``.kvc/objects`` that no reachable commit names are deleted;
5. a HEAD cache for another commit than HEAD is deleted (it would be rebuilt anyway).

The score cache is keyed by a hash of (commit, probe set), so which commit an entry is for
cannot be read back; it is kept (``kvc gc`` reports its size).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kedit_vc.errors import StoreError

if TYPE_CHECKING:
    from kedit_vc.store import Store


@dataclass(frozen=True)
class GcResult:
    objects_before: int
    objects_after: int
    bytes_before: int
    bytes_after: int
    pruned_squashed: tuple[str, ...]
    removed_objects: tuple[str, ...]  # large-delta files of .kvc/objects
    removed_head_cache: bool
    score_cache_bytes: int

    def to_json(self) -> dict:
        return {"objects_before": self.objects_before, "objects_after": self.objects_after,
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
                "pruned_squashed": list(self.pruned_squashed), "removed_objects": list(self.removed_objects),
                "removed_head_cache": self.removed_head_cache, "score_cache_bytes": self.score_cache_bytes}


def count_objects(store: "Store") -> tuple[int, int]:
    """(git objects, bytes on disk) of the store's repository, loose and packed."""
    out = store.repo.git.count_objects("-v")
    info = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    count = int(info.get("count", 0)) + int(info.get("in-pack", 0))
    kib = int(info.get("size", 0)) + int(info.get("size-pack", 0)) + int(info.get("size-garbage", 0))
    return count, kib * 1024


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _reachable_object_hashes(store: "Store") -> set[str]:
    """Content hashes of the large deltas that reachable commits keep in .kvc/objects."""
    shas = store.repo.git.rev_list("--all").split()
    keep = set()
    for sha in shas:
        info = store.manifest(sha).get("delta")
        if info and info.get("storage") == "object":
            keep.add(info["hash"])
    return keep


def gc(store: "Store", prune_squashed: bool = False, wait: bool = False) -> GcResult:
    """Prune unreachable objects and stale caches (see the module docstring)."""
    from kedit_vc.store import fsck, gitio, headcache, remotes

    with store.lock(wait):
        before = count_objects(store)
        remotes.clear_incoming(store.repo)
        pruned: tuple[str, ...] = ()
        if prune_squashed:
            pruned = tuple(sorted(store.squashed_refs()))
            if pruned:
                fsck.mark_squashed_pruned(store)
                remotes.delete_refs(store.repo, pruned)
        done = subprocess.run(["git", f"--git-dir={store.repo.git_dir}", "-c", "gc.auto=0", "-c", "pack.threads=1",
                               "-c", "repack.writeBitmaps=false", "reflog", "expire", "--expire=now", "--all"],
                              capture_output=True, text=True, pass_fds=store._lock.fds)
        done = subprocess.run(["git", f"--git-dir={store.repo.git_dir}", "-c", "gc.auto=0", "-c", "pack.threads=1",
                               "-c", "repack.writeBitmaps=false", "gc", "--prune=now", "--quiet"],
                              capture_output=True, text=True, pass_fds=store._lock.fds)
        if done.returncode != 0:
            raise StoreError(f"git gc failed in {store.paths.repo}: {done.stderr.strip()[:300]}; "
                             "the store is unchanged apart from what the message says; run `kvc fsck`")
        keep = _reachable_object_hashes(store)
        removed = []
        for path in sorted(store.paths.objects.glob("*/*.safetensors")):
            if path.stem not in keep:
                path.unlink()
                removed.append(path.stem)
        cached = headcache.read(store.paths.head_cache)
        stale = store.paths.head_cache.exists() and (cached is None or cached.commit != gitio.ref_value(
            store.repo, "HEAD") or cached.fingerprint != store.fingerprint)
        if stale:
            headcache.remove(store.paths.head_cache)
        after = count_objects(store)
    return GcResult(before[0], after[0], before[1], after[1], pruned, tuple(removed), stale,
                    _folder_bytes(store.paths.kvc / "cache" / "scores"))

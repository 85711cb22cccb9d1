"""The HEAD cache for a commit that arrived from elsewhere (a pull or a clone).

The writer of those commits advanced its cache one write at a time (``HeadCache.advance``:
an edit adds its delta, a revert of a live commit drops it, a squash or a cache that was
not for the parent is rebuilt). Replaying the same steps here gives the same sum, so a
clone's HEAD weights equal the original's bit for bit, dense sums included (rebuilding
from scratch would differ from an incrementally advanced dense sum by float rounding,
see ``headcache``). A squash's write rebuilt the sum at its last replayed commit, which
the kept history tells. The replay starts from this store's cache when that is for a
commit on the new chain (a fast-forward pull), else from the root. Where the original's
cache was rebuilt for another reason (``kvc fsck --repair``, a deleted cache, a squash
whose kept history was pruned), dense sums may differ by that rounding, within
``headcache.TOLERANCE``; factored parameters are exact whatever happened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kedit_vc.errors import KvcError

from . import headcache
from .layout import SQUASHED_REF_PREFIX
from .records import CommitRecord

if TYPE_CHECKING:
    from .store import Store


def replayed_after(store: "Store", squash: CommitRecord) -> int:
    """How many commits the squash's write replayed on top of it: those after its range's
    tip on the old history it kept (read from the kept ref's commit, whose sha the ref's
    name holds); 0 when that history is not here (pruned)."""
    info = squash.squash or {}
    old_head = str(info.get("kept_at", "")).removeprefix(SQUASHED_REF_PREFIX)
    try:
        old_chain = store.chain(old_head)
    except KvcError:
        return 0
    tip = info.get("tip")
    return len(old_chain) - old_chain.index(tip) - 1 if tip in old_chain else 0


def replay_head_cache(store: "Store", head: str) -> headcache.HeadSum:
    """The HEAD cache for ``head`` as its writer's advancing would have built it; written
    to the cache file (the caller holds the writer lock)."""
    chain = store.chain(head)
    state = headcache.read(store.paths.head_cache)
    if state is not None and (state.commit not in chain or state.fingerprint != store.fingerprint):
        state = None
    index = chain.index(state.commit) + 1 if state is not None else 1
    while index < len(chain):
        sha = chain[index]
        record = store.read_commit(sha)
        delta = record.delta()
        assert delta is not None  # only the root (skipped) has none
        if state is None or record.op == "squash":
            # the writer rebuilt at the end of its write: the squash and the commits it replayed
            end = min(index + (replayed_after(store, record) if record.op == "squash" else 0), len(chain) - 1)
            state = headcache.build(chain[end], store.fingerprint, store._live_pairs(chain[end]))
            index = end + 1
            continue
        if record.op == "revert" and record.reverts in state.live:
            assert record.reverts is not None
            state = headcache.reverted(state, sha, record.reverts, delta)
        else:
            state = headcache.added(state, sha, delta)
        index += 1
    if state is None:  # the root alone: nothing live
        state = headcache.empty(head, store.fingerprint)
    store.head_cache.save(state)
    return state

"""The HEAD cache for a commit that arrived from elsewhere (a pull or a clone).

The writer of those commits advanced its cache one write at a time (``HeadCache.advance``:
an edit adds its delta, a revert of a live commit drops it, a squash or a cache that was
not for the parent is rebuilt). Replaying the same steps here gives the same sum, so a
clone's HEAD weights equal the original's bit for bit, dense sums included (rebuilding
from scratch would differ from an incrementally advanced dense sum by float rounding,
see ``headcache``). The replay starts from this store's cache when that is for a commit on
the new chain (a fast-forward pull), else from the root. Where the original's cache was
itself rebuilt mid-history (``kvc fsck --repair``, a squash followed by replayed commits),
dense sums may differ by that rounding, within ``headcache.TOLERANCE``; factored
parameters are exact whatever happened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import headcache

if TYPE_CHECKING:
    from .store import Store


def replay_head_cache(store: "Store", head: str) -> headcache.HeadSum:
    """The HEAD cache for ``head`` as its writer's advancing would have built it; written
    to the cache file (the caller holds the writer lock)."""
    chain = store.chain(head)
    state = headcache.read(store.paths.head_cache)
    if state is not None and (state.commit not in chain or state.fingerprint != store.fingerprint):
        state = None
    start = chain.index(state.commit) + 1 if state is not None else 1
    for sha in chain[start:]:
        record = store.read_commit(sha)
        delta = record.delta()
        assert delta is not None  # only the root (skipped) has none
        if state is None or record.op == "squash":
            state = headcache.build(sha, store.fingerprint, store._live_pairs(sha))
        elif record.op == "revert" and record.reverts in state.live:
            assert record.reverts is not None
            state = headcache.reverted(state, sha, record.reverts, delta)
        else:
            state = headcache.added(state, sha, delta)
    if state is None:  # the root alone: nothing live
        state = headcache.empty(head, store.fingerprint)
    store.head_cache.save(state)
    return state

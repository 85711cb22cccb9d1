"""Which commits' deltas are in effect at a point of history (pure, no git, no torch).

Walking the first-parent chain from the root: an edit or a squash adds its delta; a
revert of a live commit removes that commit instead of adding its inverse, so the two
cancel exactly rather than numerically. A revert whose target is not live (a revert of
a revert, or a second revert) adds its own delta, which equals the exact inverse of its
target's. Hence at every point: sum of live deltas == sum of all deltas on the chain.
A squash rewrites history (its parent is its range's base), so its range is simply no
longer on the chain.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping


def live_commits(chain: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """Shas of the live commits, oldest first, from (sha, manifest) pairs oldest first."""
    live: dict[str, None] = {}
    for sha, manifest in chain:
        op = manifest["op"]
        if op == "init":
            continue
        target = manifest.get("reverts") if op == "revert" else None
        if target in live:
            del live[target]
        else:
            live[sha] = None
    return list(live)

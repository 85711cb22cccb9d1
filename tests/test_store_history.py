"""Hypothesis: any sequence of edits, reverts and squashes keeps
materialize(live deltas) == the sum of every delta ever committed on HEAD's chain."""

from __future__ import annotations

import tempfile

from hypothesis import given, settings

from kedit_vc.delta import materialize
from kedit_vc.store import init_store
from store_helpers import assert_sums_match, chain_sum, history_ops, random_step

OPS = history_ops(max_size=9)


@settings(max_examples=25, deadline=None)
@given(OPS)
def test_live_deltas_sum_to_all_committed_deltas(ops):
    with tempfile.TemporaryDirectory() as root, init_store(root, "m", "fp") as store:
        expected: dict = {}
        for op in ops:
            random_step(store, op, expected)
            assert_sums_match(materialize(store.live_deltas()), expected, atol=1e-4)
            assert_sums_match(chain_sum(store), expected, atol=1e-4)
        assert store.fsck() == []

"""Hypothesis: any sequence of edits, reverts and squashes keeps
materialize(live deltas) == the sum of every delta ever committed on HEAD's chain."""

from __future__ import annotations

import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from kedit_vc.delta import materialize
from kedit_vc.errors import StoreError
from kedit_vc.store import CommitInput, init_store
from store_helpers import add_into, assert_sums_match, small_delta

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("edit"), st.integers(0, 10**6)),
        st.tuples(st.just("revert"), st.integers(0, 50)),
        st.tuples(st.just("squash"), st.integers(0, 50), st.integers(1, 4)),
    ),
    min_size=1,
    max_size=9,
)

def chain_sum(store) -> dict:
    """Ground truth: every commit's delta on the chain, reverts and squashes included."""
    total: dict = {}
    for record in store.log():
        if record.op != "init":
            add_into(total, record.delta())
    return total

@settings(max_examples=25, deadline=None)
@given(OPS)
def test_live_deltas_sum_to_all_committed_deltas(ops):
    with tempfile.TemporaryDirectory() as root, init_store(root, "m", "fp") as store:
        expected: dict = {}
        for op in ops:
            chain = store.chain()
            head = store.head()
            if op[0] == "edit":
                delta = small_delta(op[1])
                store.write_commit(CommitInput("edit", delta))
                add_into(expected, delta)
            elif op[0] == "revert" and len(chain) > 1:
                target = chain[1 + op[1] % (len(chain) - 1)]
                store.write_commit(CommitInput("revert", op="revert", reverts=target))
                add_into(expected, store.read_commit(target).delta(), -1.0)
            elif op[0] == "squash" and len(chain) > 2:
                base_index = op[1] % (len(chain) - 1)
                tip_index = min(base_index + op[2], len(chain) - 1)
                inside = chain[base_index + 1 : tip_index + 1]
                deltas = [store.read_commit(sha).delta() for sha in inside]
                net = deltas[0]
                for d in deltas[1:]:
                    net = net.compose(d)
                try:
                    store.write_commit(CommitInput("squash", net, op="squash",
                                                   squash_range=(chain[base_index], chain[tip_index])))
                except StoreError as error:
                    assert "reverts" in str(error) and store.head() == head
            assert_sums_match(materialize(store.live_deltas()), expected, atol=1e-4)
            assert_sums_match(chain_sum(store), expected, atol=1e-4)
        assert store.fsck() == []

"""Small helpers shared by the store tests: random deltas and dense sums."""

from __future__ import annotations

from typing import Callable

import torch
from hypothesis import strategies as st

from delta_strategies import SHAPES, random_update
from kedit_vc.delta import Delta
from kedit_vc.errors import StoreError
from kedit_vc.store import CommitInput


def small_delta(seed: int, kinds=("lowrank", "dense")) -> Delta:
    """A delta touching one or two toy parameters, chosen by ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    names = sorted(SHAPES)
    chosen = [names[i] for i in torch.randperm(len(names), generator=gen)[: 1 + seed % 2].tolist()]
    return Delta({n: random_update(SHAPES[n], kinds[(seed + i) % len(kinds)], 1 + seed % 3, seed + i)
                  for i, n in enumerate(chosen)}, {"seed": str(seed)})


def add_into(total: dict[str, torch.Tensor], delta: Delta, sign: float = 1.0) -> None:
    for name in delta.updates:
        total[name] = total.get(name, torch.zeros(delta.updates[name].shape)) + sign * delta.dense(name)


def assert_sums_match(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], atol: float = 1e-5) -> None:
    for name in set(actual) | set(expected):
        zero = torch.zeros(SHAPES[name])
        torch.testing.assert_close(actual.get(name, zero), expected.get(name, zero), atol=atol, rtol=1e-5)


def chain_sum(store) -> dict[str, torch.Tensor]:
    """Ground truth: every delta on HEAD's chain added up (reverts and squashes included)."""
    total: dict[str, torch.Tensor] = {}
    for record in store.log():
        if record.op != "init":
            add_into(total, record.delta())
    return total


def random_step(store, op: tuple, expected: dict[str, torch.Tensor],
                make: Callable[[int], Delta] = small_delta) -> None:
    """One step of a random history, applied to ``store`` and mirrored into ``expected``.

    ``("edit", seed)``: commit ``make(seed)``; ``("revert", i)``: revert a commit picked by
    ``i``; ``("squash", i, n)``: replace up to ``n`` commits after the one picked by ``i``
    by their composed delta (the sum is unchanged; a range that would part a revert from
    its target is refused and nothing is written). Other ops, or ops the history is too
    short for, do nothing.
    """
    chain, head = store.chain(), store.head()
    if op[0] == "edit":
        delta = make(op[1])
        store.write_commit(CommitInput("edit", delta))
        add_into(expected, delta)
    elif op[0] == "revert" and len(chain) > 1:
        target = chain[1 + op[1] % (len(chain) - 1)]
        store.write_commit(CommitInput("revert", op="revert", reverts=target))
        add_into(expected, store.read_commit(target).delta(), -1.0)
    elif op[0] == "squash" and len(chain) > 2:
        base = op[1] % (len(chain) - 1)
        tip = min(base + op[2], len(chain) - 1)
        deltas = [store.read_commit(sha).delta() for sha in chain[base + 1 : tip + 1]]
        net = deltas[0]
        for d in deltas[1:]:
            net = net.compose(d)
        try:
            store.write_commit(CommitInput("squash", net, op="squash", squash_range=(chain[base], chain[tip])))
        except StoreError as error:
            assert "reverts" in str(error) and store.head() == head


def history_ops(max_size: int) -> st.SearchStrategy:
    """Random histories for ``random_step``: edits, reverts of a commit, squashes of a range."""
    return st.lists(
        st.one_of(
            st.tuples(st.just("edit"), st.integers(0, 10**6)),
            st.tuples(st.just("revert"), st.integers(0, 50)),
            st.tuples(st.just("squash"), st.integers(0, 50), st.integers(1, 4)),
        ),
        min_size=1,
        max_size=max_size,
    )

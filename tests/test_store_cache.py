"""The HEAD cache (``store.headcache``): HEAD's weights from one file, never wrong ones.

Checked against the naive ground truth (every delta on HEAD's chain added one by one) and
against the full read (``materialize(live_deltas)``), through commits, reverts, reverts of
reverts and squashes; a cache for another commit, a corrupt one, a forged one and a
missing one cost speed at most.
"""

from __future__ import annotations

import tempfile

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from delta_strategies import toy_model
from kedit_vc.delta import Delta, LowRank, materialize
from kedit_vc.errors import StoreError
from kedit_vc.ops.weights import Weights
from kedit_vc.store import CommitInput, Store, headcache, init_store
from store_helpers import assert_sums_match, chain_sum, random_step, small_delta

FP = "sha256:base-fingerprint"


@pytest.fixture
def store(tmp_path):
    with init_store(tmp_path / "project", "m", FP) as s:
        yield s


def edit(store, seed, kinds=("lowrank", "dense")):
    return store.write_commit(CommitInput(f"edit {seed}", small_delta(seed, kinds)))


def cached(store):
    """The cache file's state, read from disk (None when missing or unusable)."""
    return headcache.read(store.paths.head_cache)


def head_sums(store) -> dict:
    return materialize([store.live_sum()])


def test_the_cache_follows_commits_reverts_and_squashes(store):
    a, b, c = edit(store, 1), edit(store, 2), edit(store, 3)
    steps = [
        lambda: edit(store, 4),
        lambda: store.write_commit(CommitInput("revert b", op="revert", reverts=b)),
        lambda: store.write_commit(CommitInput("revert the revert", op="revert", reverts=store.head())),
        lambda: store.write_commit(CommitInput("revert a", op="revert", reverts=a)),
        lambda: store.write_commit(CommitInput("sq", small_delta(9), op="squash", squash_range=(b, c))),
        lambda: edit(store, 5),
    ]
    for step in steps:
        step()
        state = cached(store)
        assert state is not None and state.commit == store.head()  # advanced by the write itself
        assert list(state.live) == store.live_commits()
        expected = chain_sum(store)
        assert_sums_match(head_sums(store), expected)
        assert_sums_match(materialize(store.live_deltas()), expected)
        with Store(store.paths.root) as fresh:  # a new process reads the file, not memory
            assert_sums_match(head_sums(fresh), expected)
    assert store.fsck() == []


def test_head_weights_from_the_cache_match_naive_application(store):
    for seed in range(6):
        edit(store, seed)
    store.write_commit(CommitInput("revert", op="revert", reverts=store.chain()[2]))
    model, naive = toy_model(), toy_model()
    Weights(model).set_deltas([store.live_sum()])
    params = naive.state_dict(keep_vars=True)
    with torch.no_grad():
        for record in store.log()[::-1]:
            if record.op != "init":
                for name, update in record.delta().updates.items():
                    params[name].add_(update.dense())
    for name, value in naive.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, atol=1e-5, rtol=1e-5)


def test_factored_parameters_are_bit_identical_to_the_full_read(store):
    """Low-rank updates stay factors in the cache: the same matrices the full read multiplies."""
    gen = torch.Generator().manual_seed(0)
    shas = [store.write_commit(CommitInput(f"r{i}", Delta({f"w{i % 2}": LowRank(torch.randn(40, 1 + i % 3, generator=gen),
                                                                                torch.randn(30, 1 + i % 3, generator=gen))})))
            for i in range(6)]
    store.write_commit(CommitInput("revert", op="revert", reverts=shas[2]))
    assert all(isinstance(u, LowRank) for u in cached(store).updates.values())
    full = materialize(store.live_deltas())
    from_cache = materialize([store.live_sum()])
    assert full.keys() == from_cache.keys() and all(torch.equal(full[n], from_cache[n]) for n in full)


def test_a_parameter_turns_dense_past_its_dense_size(store):
    name = "h.0.mlp.c_proj.weight"  # 6 x 4: rank 3 costs 30 numbers, dense 24
    gen = torch.Generator().manual_seed(0)
    for i in range(3):
        store.write_commit(CommitInput(f"r{i}", Delta({name: LowRank(torch.randn(6, 1, generator=gen),
                                                                      torch.randn(4, 1, generator=gen))})))
        assert isinstance(cached(store).updates[name], LowRank) == (i < 2)
    assert_sums_match(head_sums(store), chain_sum(store))


def test_a_cache_for_another_commit_is_ignored(store):
    edit(store, 1)
    old = store.paths.head_cache.read_bytes()
    edit(store, 2)
    store.paths.head_cache.write_bytes(old)  # valid file, key = the previous commit
    with Store(store.paths.root) as fresh:
        assert_sums_match(head_sums(fresh), chain_sum(fresh))
    assert cached(store).commit == store.head()  # rebuilt on the way


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_a_corrupt_cache_is_ignored_reported_and_rebuilt(store, damage):
    for seed in range(3):
        edit(store, seed)
    path = store.paths.head_cache
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-3] ^= 0x40  # inside the last tensor: the content hash no longer matches
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray(b"not a safetensors file")
    path.write_bytes(bytes(data))
    with Store(store.paths.root) as fresh:
        assert any(p.startswith("HEAD cache") and "--repair" in p for p in fresh.fsck())
        assert_sums_match(head_sums(fresh), chain_sum(fresh))
        assert fresh.fsck() == []  # the checkout rewrote it


def test_a_forged_cache_is_caught_by_fsck_and_repaired(store, tmp_path):
    """A well-formed file claiming HEAD but holding other sums: what fsck compares for."""
    edit(store, 1)
    state = cached(store)
    name = sorted(state.updates)[0]
    wrong = headcache.HeadSum(state.commit, state.fingerprint, state.live,
                              {**state.updates, name: state.updates[name].negated()}, state.owners)
    headcache.write(store.paths.head_cache, wrong, store.paths.tmp)
    with Store(store.paths.root) as fresh:
        assert any("differs from the history's" in p for p in fresh.fsck())
        fresh.rebuild_head_cache()
        assert fresh.fsck() == []
        assert_sums_match(head_sums(fresh), chain_sum(fresh))


def test_deleting_the_cache_changes_nothing_but_speed(store):
    shas = [edit(store, seed) for seed in range(5)]
    store.write_commit(CommitInput("revert", op="revert", reverts=shas[1]))
    before = head_sums(store)
    store.paths.head_cache.unlink()
    with Store(store.paths.root) as fresh:
        after = head_sums(fresh)  # summed afresh: dense sums may differ in the last bits
    assert_sums_match(after, before, atol=1e-6)
    assert cached(store).commit == store.head()


def test_a_revert_deep_in_history_does_not_read_the_history(store, monkeypatch):
    shas = [edit(store, seed) for seed in range(8)]

    def no_history(rev):
        raise AssertionError("the revert read the whole history")

    monkeypatch.setattr(store, "_live_pairs", no_history)
    store.write_commit(CommitInput("revert", op="revert", reverts=shas[1]))
    assert cached(store).commit == store.head()
    monkeypatch.undo()
    assert_sums_match(head_sums(store), chain_sum(store))


def test_a_cache_for_another_base_model_is_ignored(store):
    edit(store, 1)
    state = cached(store)
    headcache.write(store.paths.head_cache, headcache.HeadSum(state.commit, "other", state.live, state.updates,
                                                              state.owners), store.paths.tmp)
    with Store(store.paths.root) as fresh:
        assert fresh.head_cache.for_commit(fresh.head()) is None
        assert_sums_match(head_sums(fresh), chain_sum(fresh))


def test_history_for_another_base_fails_with_or_without_cache(store):
    edit(store, 1)
    store._config = type(store.config)("m", "other")  # simulate a commit from another base
    edit(store, 2)
    store._config = None
    with pytest.raises(StoreError, match="another base model"):
        store.live_sum()


def test_fsck_repair_from_the_cli(store, monkeypatch):
    from conftest import run_kvc

    edit(store, 1)
    store.paths.head_cache.write_bytes(b"junk")
    monkeypatch.chdir(store.paths.root)
    result = run_kvc("fsck", "--skip-model")
    assert result.exit_code == 1 and "HEAD cache" in result.output
    result = run_kvc("fsck", "--skip-model", "--repair")
    assert result.exit_code == 0 and "rebuilt the HEAD cache" in result.output


def mixed_delta(seed: int) -> Delta:
    """``small_delta`` plus, mostly, a low-rank update of a 24 x 16 matrix (factored in the
    cache up to rank 9): both forms of a cached parameter occur."""
    delta = small_delta(seed)
    if seed % 3:
        gen = torch.Generator().manual_seed(seed)
        rank = 1 + seed % 2
        delta = delta.compose(Delta({"big": LowRank(torch.randn(24, rank, generator=gen) * 0.1,
                                                     torch.randn(16, rank, generator=gen) * 0.1)}))
    return delta


def assert_close_sums(actual: dict, expected: dict, atol: float) -> None:
    for name in set(actual) | set(expected):
        like = actual.get(name, expected.get(name))
        torch.testing.assert_close(actual.get(name, torch.zeros_like(like)),
                                   expected.get(name, torch.zeros_like(like)), atol=atol, rtol=1e-5)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("edit"), st.integers(0, 10**6)),
        st.tuples(st.just("revert"), st.integers(0, 50)),
        st.tuples(st.just("squash"), st.integers(0, 50), st.integers(1, 3)),
        st.tuples(st.just("drop cache")),
        st.tuples(st.just("corrupt cache")),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=25, deadline=None)
@given(OPS)
def test_cached_head_equals_naive_under_any_history(ops):
    with tempfile.TemporaryDirectory() as root, init_store(root, "m", FP) as store:
        expected: dict = {}
        for op in ops:
            random_step(store, op, expected, make=mixed_delta)
            if op[0] == "drop cache":
                store.paths.head_cache.unlink(missing_ok=True)
            elif op[0] == "corrupt cache" and store.paths.head_cache.exists():
                store.paths.head_cache.write_bytes(store.paths.head_cache.read_bytes()[:-5])
            with Store(root) as fresh:  # what the next process sees, cache or not
                assert_close_sums(head_sums(fresh), expected, atol=1e-5)
            assert_close_sums(head_sums(store), expected, atol=1e-5)
        assert store.fsck() == []

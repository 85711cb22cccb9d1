"""WISE's knowledge shards and TIES merge, on small tensors and on a tiny random Llama.

The TIES merge equals a direct entry-by-entry computation (trim to the top-density
magnitudes, sign elected by the weighted sum, weighted mean of the agreeing values); an
edit that opens a new shard leaves the earlier shards' entries as they were; committing and
reverting sharded edits restores the side memory bit for bit; a mixed history (ROME, GRACE,
two WISE shards merged, revert of the GRACE commit) materialises exactly as its live patches
applied afresh; version-1 (one-shard) files still read.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import TINY_ROME, run_kvc
from test_cli_store import EIFFEL, FRANCE, TOKYO
from test_patches import TINY_GRACE, commit, load, logits

# One edit a shard, two shards a merge group: every commit opens a shard, every second merges.
TINY_SHARDED = ("method wise { layer = 2 steps = 40 lr = 50.0 alpha = 0.05 beta = 0.5 gamma = 0.3 "
                "shard_size = 1 shards_per_merge = 2 }")
MADRID = '''edit "Prado Museum" prompt "The {subject} is located in the city of": "Madrid" -> "Lisbon"'''
PROBES = ("The Eiffel Tower is located in the city of Rome", "Tokyo is the capital of",
          "The Prado Museum is located in the city of", "The capital of France is")


def sidememories(store, rev="HEAD"):
    return [p for p in store.live_patches(rev) if p.kind == "sidememory"]


def memory_at(store, rev="HEAD"):
    from kedit_vc.patches.sidememory.live import live_memory

    (memory,) = live_memory(sidememories(store, rev)).values()
    return memory


# -- TIES on small tensors ----------------------------------------------------------------

def direct_ties(deltas: list[list[float]], weights: list[float], density: float) -> list[float]:
    """TIES over flat lists, one entry at a time, as the paper states it."""
    n = len(deltas[0])
    keep = n if density >= 1 else int(density * n)
    trimmed = []
    for d in deltas:
        order = sorted(range(n), key=lambda i: (-abs(d[i]), i))[:keep]
        trimmed.append([d[i] if i in order else 0.0 for i in range(n)])
    out = []
    for i in range(n):
        # The sign is elected in float32, as the merge computes it: products that tie exactly in
        # float32 (0.2 * 3 against 0.3 * -2) may not tie in float64.
        values = torch.tensor(weights, dtype=torch.float32) * torch.tensor([t[i] for t in trimmed],
                                                                          dtype=torch.float32)
        sign = 1.0 if float(values.sum()) >= 0 else -1.0
        agree = [(w, t[i]) for w, t in zip(weights, trimmed) if t[i] != 0 and (t[i] > 0) == (sign > 0)]
        out.append(sum(w * v for w, v in agree) / sum(w for w, _ in agree) if agree else 0.0)
    return out


vectors = st.integers(1, 4).flatmap(lambda k: st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.sampled_from([0.0, 0.5, -0.5, 1.0, -2.0, 3.0, -0.25]) | st.floats(-4, 4, width=32),
                      min_size=n, max_size=n), min_size=k, max_size=k),
    st.lists(st.sampled_from([0.125, 0.2, 0.25, 0.3, 0.5, 0.6, 1.0, 2.0]), min_size=k, max_size=k))))


@settings(max_examples=200, deadline=None)
@given(case=vectors, density=st.sampled_from([0.1, 0.25, 0.53, 0.8, 1.0]))
@example(case=([[0.0] * 7, [0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, -2.0, 0.0, 0.0, 0.0]],
               [0.125, 0.2, 0.3]), density=0.25)  # a sign tie in float32 only
@example(case=([[0.0] * 5, [0.0, -0.5, 0.0, 0.0, 0.0], [0.0, -1.401298464324817e-45, 0.0, 0.0, 0.0]],
               [0.125, 0.125, 0.125]), density=0.25)  # a kept entry whose weighted value underflows to 0
def test_ties_merge_matches_a_direct_computation(case, density):
    from kedit_vc.patches.sidememory.merge import ties_merge, trim

    deltas, weights = case
    tensors = [torch.tensor(d, dtype=torch.float32) for d in deltas]
    merged = ties_merge(tensors, weights, density)
    expected = torch.tensor(direct_ties([t.tolist() for t in tensors], [float(torch.tensor(w)) for w in weights],
                                        density), dtype=torch.float32)
    torch.testing.assert_close(merged, expected, rtol=1e-5, atol=1e-5)
    for t in tensors:
        kept = trim(t, density)
        assert bool(((kept == 0) | (kept == t)).all())                       # trim only zeroes entries
        dropped = t[(kept == 0) & (t != 0)].abs()
        if dropped.numel() and bool((kept != 0).any()):
            assert float(dropped.max()) <= float(kept[kept != 0].abs().min())  # the top magnitudes are kept
        assert int((kept != 0).sum()) <= max(int(density * t.numel()), 0) or density >= 1


def test_ties_merge_elects_the_sign_and_averages_only_the_agreeing_values():
    from kedit_vc.patches.sidememory.merge import ties_merge

    a = torch.tensor([[1.0, -3.0, 0.0, 2.0]])
    b = torch.tensor([[3.0, 1.0, 0.0, 0.0]])
    merged = ties_merge([a, b], [0.5, 0.5], density=1.0)
    # entry 0: both +: mean 2; entry 1: sum -2 elects -, only a agrees: -3; entry 2: none; entry 3: a alone
    assert merged.tolist() == [[2.0, -3.0, 0.0, 2.0]]
    with pytest.raises(ValueError, match="one weight per task vector"):
        ties_merge([a], [0.5, 0.5], 1.0)


# -- shards on the tiny model -------------------------------------------------------------

def test_each_commit_opens_a_shard_with_its_own_mask_and_leaves_the_other_shards_entries_as_they_were(store):
    from kedit_vc.patches.sidememory.merge import ties_merge

    commit(store, "a.kedit", EIFFEL, method=TINY_SHARDED)
    first = memory_at(store)
    commit(store, "b.kedit", TOKYO, method=TINY_SHARDED)
    one, two = sidememories(store)
    assert (one.shard, one.group, two.shard, two.group) == (0, 0, 1, 0) and two.edits_before == 1
    assert not torch.equal(one.mask, two.mask)                       # a fresh gradient mask per shard
    memory = memory_at(store)
    assert len(memory.shards) == 2 and memory.merges == 1
    assert torch.equal(memory.shards[0].delta, first.delta)          # shard 0 untouched by the second edit
    increment = two.increment()
    assert bool((increment[~two.bool_mask()] == 0).all())            # the edit wrote only its own shard's entries
    only_first = one.bool_mask() & ~two.bool_mask()
    assert torch.equal(memory.delta[only_first], first.delta[only_first])   # disjoint merge keeps them exactly
    expected = ties_merge([s.delta for s in memory.shards], [0.5, 0.5], one.density)
    assert torch.equal(memory.delta, expected)
    info = run_kvc("show", "HEAD")
    assert info.exit_code == 0 and "shard 1 (merge group 0, 1 edits a shard, TIES density 0.53)" in info.output
    assert store.fsck() == []


def test_revert_restores_the_sharded_side_memory_bit_for_bit(store):
    from kedit_vc.ops import revert
    from kedit_vc.patches.sidememory.live import live_memory

    commit(store, "a.kedit", EIFFEL, method=TINY_SHARDED)
    commit(store, "b.kedit", TOKYO, method=TINY_SHARDED)
    two_shards, two_logits = memory_at(store), {t: logits(load(store), t) for t in PROBES}
    commit(store, "c.kedit", MADRID, method=TINY_SHARDED)
    three = memory_at(store)
    assert [s.group for s in three.shards] == [0, 0, 1] and three.merges == 2   # group 1 merged with the memory
    assert not torch.equal(three.delta, two_shards.delta)
    revert(store, "HEAD")
    back = memory_at(store)
    assert torch.equal(back.delta, two_shards.delta) and back.edit_ids == two_shards.edit_ids
    assert back.threshold == two_shards.threshold
    model = load(store)
    for text in PROBES:
        assert torch.equal(logits(model, text), two_logits[text]), text
    # Reverting an older commit takes out exactly its shard: the memory of the other two afresh.
    a_sha, b_sha, c_sha = store.chain("HEAD")[1:4]
    revert(store, "HEAD")                                             # the revert of the revert: c is live again
    assert torch.equal(memory_at(store).delta, three.delta)
    revert(store, b_sha)
    a, c = (store.read_commit(sha).patches()[0] for sha in (a_sha, c_sha))
    assert [p.content_hash() for p in sidememories(store)] == [a.content_hash(), c.content_hash()]
    assert torch.equal(memory_at(store).delta, next(iter(live_memory([a, c]).values())).delta)
    assert store.fsck() == []


def test_mixed_history_with_merged_wise_shards_then_revert_grace_materialises_exactly(store, tiny_model_dir):
    from kedit_vc.models import load_model
    from kedit_vc.ops import revert
    from kedit_vc.patches.attach import side_patches

    commit(store, "rome.kedit", FRANCE, method=TINY_ROME)
    commit(store, "grace.kedit", TOKYO, method=TINY_GRACE)
    commit(store, "wise1.kedit", EIFFEL, method=TINY_SHARDED)
    commit(store, "wise2.kedit", MADRID, method=TINY_SHARDED)
    rome_sha, grace_sha, w1, w2 = store.chain("HEAD")[1:5]
    revert(store, grace_sha)
    assert store.live_commits("HEAD") == [rome_sha, w1, w2]
    assert [(p.kind, p.shard) for p in store.live_patches("HEAD")] == [("sidememory", 0), ("sidememory", 1)]

    fresh = load_model(str(tiny_model_dir)).model
    store.read_commit(rome_sha).delta().apply(fresh)
    side_patches(fresh).set([*store.read_commit(w1).patches(), *store.read_commit(w2).patches()])
    model = load(store)
    for text in PROBES:
        assert torch.equal(logits(model, text), logits(fresh, text)), text
    assert memory_at(store).merges == 1
    assert store.fsck() == []


def test_a_commit_of_several_edits_writes_one_patch_per_shard(store):
    two = EIFFEL + "\n" + TOKYO + "\n" + MADRID
    commit(store, "abc.kedit", two, method=TINY_SHARDED.replace("shard_size = 1", "shard_size = 2"))
    patches = sidememories(store)
    assert [(p.shard, len(p.edit_ids), p.edits_before) for p in patches] == [(0, 2, 0), (1, 1, 2)]
    assert len(memory_at(store).edit_ids) == 3


def test_a_version_1_side_memory_still_reads_as_one_shard():
    from kedit_vc.patches.sidememory.core import SideMemoryPatch

    g = torch.Generator().manual_seed(0)
    mask = torch.rand(4, 6, generator=g) < 0.3
    legacy = SideMemoryPatch.from_dense("m", torch.randn(4, 6, generator=g) * mask, mask, torch.tensor([2.0]),
                                        ("e",), 0.88, 0.2)
    assert legacy.version == "1" and legacy.info()["shards"] == 1
    back = SideMemoryPatch.from_bytes(legacy.to_bytes(), expected_hash=legacy.content_hash())
    assert back.shard_size == 0 and torch.equal(back.increment(), legacy.increment())
    assert "1 shard (version 1: no merge)" in back.describe()["summary"]


def test_shard_hparams_are_checked_before_any_model_loads():
    from kedit_vc.editors.wise.hparams import WiseHparams, check

    problems = check(WiseHparams(shard_size=0, density=0.0, memory_weight=1.0))
    assert any("shard_size" in p for p in problems) and any("density" in p for p in problems)
    assert any("memory_weight" in p for p in problems)

"""WISE-Retrieve: a memory per merge group, each with its own threshold, routed top-1.

On small tensors: the router sends each sequence to the memory it activates most among those
whose threshold it reaches, and leaves the output itself alone when it reaches none; a complete
merge group is its shards TIES-merged, a filling group's shards are memories of their own. On a
tiny random Llama: three retrieve commits give a merged group and a lone shard, the patch file
records the mode (and a WISE-Merge file's hash is unchanged by it), and a revert restores the
memories and the logits bit for bit.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from test_cli_store import EIFFEL, TOKYO
from test_patches import commit, load, logits
from test_wise_shards import MADRID, PROBES, TINY_SHARDED, memory_at, sidememories

TINY_RETRIEVE = TINY_SHARDED.replace("shards_per_merge = 2", "shards_per_merge = 2 retrieve = true")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), memories=st.integers(1, 4))
def test_each_sequence_goes_to_the_memory_it_activates_most_among_those_it_reaches(seed, memories):
    from kedit_vc.patches.sidememory.live import activation, route

    g = torch.Generator().manual_seed(seed)
    deltas = [torch.randn(5, 8, generator=g) * (k + 1) for k in range(memories)]
    inputs = torch.randn(6, 4, 8, generator=g)
    output = torch.randn(6, 4, 5, generator=g)
    scored = [activation(inputs, d) for d in deltas]                    # (side [6, 4, 5], score [6]) each
    thresholds = [float(score.median()) for _, score in scored]
    out = route(inputs, output, list(zip(deltas, thresholds)))
    for row in range(6):
        reached = [k for k in range(memories) if scored[k][1][row] >= thresholds[k]]
        if not reached:
            assert torch.equal(out[row], output[row])
        else:
            best = max(reached, key=lambda k: float(scored[k][1][row]))
            assert torch.equal(out[row], output[row] + scored[best][0][row])
    above = [(d, float(s.max()) + 1) for d, (_, s) in zip(deltas, scored)]
    assert route(inputs, output, above) is output


def _shard(index: int, group: int, least: float, edits: int = 1, seed: int = 0):
    from kedit_vc.patches.sidememory.live import Shard

    g = torch.Generator().manual_seed(seed + index)
    return Shard(index, group, torch.randn(3, 4, generator=g), torch.ones(3, 4, dtype=torch.bool), edits, least)


def test_a_complete_group_is_one_merged_memory_and_a_filling_groups_shards_are_their_own():
    from kedit_vc.patches.sidememory.live import retrieved
    from kedit_vc.patches.sidememory.merge import ties_merge

    shards = [_shard(0, 0, 30.0), _shard(1, 0, 20.0), _shard(2, 1, 50.0)]
    memories, merges = retrieved(shards, 0.5, 0.53, shard_size=1, shards_per_merge=2)
    assert merges == 1 and [m.shards for m in memories] == [(0, 1), (2,)]
    assert torch.equal(memories[0].delta, ties_merge([shards[0].delta, shards[1].delta], [0.5, 0.5], 0.53))
    assert memories[0].threshold == 0.5 * 20.0 and memories[1].threshold == 0.5 * 50.0
    assert torch.equal(memories[1].delta, shards[2].delta)
    # The newest group merges once its last shard is full, not before.
    filling = [_shard(0, 0, 30.0, edits=2), _shard(1, 0, 20.0, edits=1)]
    memories, merges = retrieved(filling, 0.5, 0.53, shard_size=2, shards_per_merge=2)
    assert merges == 0 and [m.shards for m in memories] == [(0,), (1,)]


def test_retrieve_commits_keep_a_memory_per_group_and_revert_restores_them_bit_for_bit(store):
    from kedit_vc.ops import revert
    from kedit_vc.patches.sidememory.core import SideMemoryPatch

    commit(store, "a.kedit", EIFFEL, method=TINY_RETRIEVE)
    commit(store, "b.kedit", TOKYO, method=TINY_RETRIEVE)
    two = memory_at(store)
    assert two.retrieve and [m.shards for m in two.memories] == [(0, 1)] and two.merges == 1
    before = {t: logits(load(store), t) for t in PROBES}
    commit(store, "c.kedit", MADRID, method=TINY_RETRIEVE)
    three = memory_at(store)
    assert [m.shards for m in three.memories] == [(0, 1), (2,)]         # group 1 is not merged into group 0
    assert torch.equal(three.memories[0].delta, two.memories[0].delta)
    patch = sidememories(store)[-1]
    assert patch.retrieve and patch.shards_per_merge == 2 and patch.info()["retrieve"] is True
    back = SideMemoryPatch.from_bytes(patch.to_bytes(), expected_hash=patch.content_hash())
    assert back.retrieve and back.shards_per_merge == 2
    assert "WISE-Retrieve" in patch.describe()["summary"]
    revert(store, "HEAD")
    after = memory_at(store)
    assert [m.shards for m in after.memories] == [(0, 1)]
    assert torch.equal(after.memories[0].delta, two.memories[0].delta) and after.threshold == two.threshold
    model = load(store)
    for text in PROBES:
        assert torch.equal(logits(model, text), before[text]), text
    assert store.fsck() == []


def test_a_merge_mode_file_does_not_record_retrieve():
    from kedit_vc.patches.sidememory.core import SideMemoryPatch

    g = torch.Generator().manual_seed(1)
    mask = torch.rand(4, 6, generator=g) < 0.3
    patch = SideMemoryPatch.from_dense("m", torch.randn(4, 6, generator=g) * mask, mask, torch.tensor([2.0]),
                                       ("e",), 0.88, 0.2, shard_size=5)
    assert "retrieve" not in patch.info() and "shards_per_merge" not in patch.info()


def test_negative_replay_keeps_an_earlier_groups_edit_off_the_shard_in_training(store):
    """With ``replay``, a WISE-Retrieve commit into a new merge group also pushes the earlier
    groups' edits under α on its own shard (the reference's negative replay); without it
    nothing does. Shards of one edit, one shard a group: every commit is a group of its own."""
    from kedit_vc.editors.registry import build_hparams
    from kedit_vc.editors.wise.algorithm import memory_texts, negative_replay_loss
    from kedit_vc.ops import revert

    def method(replay: int) -> str:
        return ("method wise { layer = 2 steps = 40 lr = 50.0 alpha = 0.05 beta = 0.5 gamma = 0.3 shard_size = 1 "
                f"shards_per_merge = 1 retrieve = true replay = {replay} }}")

    def earlier_on_newest() -> float:
        """The first edit's activation on the newest shard (group 1)."""
        patches = sidememories(store)
        model = load(store)
        seen: dict[str, torch.Tensor] = {}
        handle = model.get_submodule(patches[0].module).register_forward_hook(
            lambda _m, a, _o: seen.__setitem__("a", a[0]))
        with torch.no_grad():
            model(input_ids=torch.tensor([memory_texts(patches, "group", 0)[0][0]]))
        handle.remove()
        newest = patches[-1].increment()                       # the shard starts at 0: its whole D
        return float((seen["a"][0] @ newest.T).norm(dim=-1).mean())

    commit(store, "a.kedit", EIFFEL, method=method(1))
    assert len(memory_texts(sidememories(store), "group", 0)) == 1 and memory_texts(sidememories(store), "group", 1) == []
    commit(store, "b.kedit", TOKYO, method=method(0))
    assert sidememories(store)[-1].group == 1
    without = earlier_on_newest()
    revert(store, "HEAD")
    commit(store, "c.kedit", TOKYO, method=method(1))
    with_replay = earlier_on_newest()
    info = store.read_commit("HEAD").manifest["extra"]["editor_info"][0]["edits"][0]
    assert with_replay < without, (without, with_replay)
    if info["steps"] < 40:              # stopped early: only once the earlier edit is under alpha
        assert with_replay <= 0.05 + 1e-4
    hp = build_hparams("wise", {"alpha": 1.0})
    delta = torch.eye(3)
    assert float(negative_replay_loss([], delta, hp, 0)) == 0.0
    inputs = [torch.full((2, 3), 2.0)]                                  # activation ‖(2,2,2)‖ = 2√3
    assert float(negative_replay_loss([inputs], delta, hp, 0)) == pytest.approx(2 * 3 ** 0.5 - 1.0)
    assert float(negative_replay_loss([[torch.zeros(2, 3)]], delta, hp, 5)) == 0.0

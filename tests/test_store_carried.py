"""Carried method state: each commit may add named tensors to a running sum, and the state
at a revision is the sum over the commits live there (reverts remove, squashes keep)."""

from __future__ import annotations

import tempfile

import pytest
import torch
from hypothesis import given, settings

from kedit_vc.store import CommitInput, init_store
from kedit_vc.store import gitio
from kedit_vc.store.layout import CARRIED_FILE, MANIFEST_FILE
from store_helpers import history_ops, random_step, small_delta

NAMES = ("ultraedit/L1/sum", "ultraedit/L1/count", "ultraedit/L2/sum")


def contribution(seed: int) -> dict[str, torch.Tensor]:
    """A seed's carried tensors: one to three of ``NAMES`` (sums [4], counts [1])."""
    gen = torch.Generator().manual_seed(seed)
    chosen = NAMES[: 1 + seed % 3]
    return {name: (torch.ones(1) * (1 + seed % 5) if name.endswith("count") else torch.randn(4, generator=gen))
            for name in chosen}


def add(total: dict[str, torch.Tensor], part: dict[str, torch.Tensor], sign: float = 1.0) -> None:
    for name, tensor in part.items():
        total[name] = total.get(name, torch.zeros_like(tensor, dtype=torch.float64)) + sign * tensor.double()


def assert_state(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Equal up to float32 rounding; names whose sum cancelled to zero may be kept or not."""
    for name in set(actual) | set(expected):
        want = expected.get(name)
        got = actual.get(name)
        if want is None:
            assert got is not None and torch.allclose(got.double(), torch.zeros_like(got.double()), atol=1e-5)
        elif got is None:
            assert torch.allclose(want, torch.zeros_like(want), atol=1e-5), name
        else:
            assert got.dtype == torch.float32
            torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


@pytest.fixture
def store(tmp_path):
    with init_store(tmp_path, "m", "fp") as s:
        yield s


def edit(store, seed: int, carried=None) -> str:
    return store.write_commit(CommitInput(f"edit {seed}", small_delta(seed), carried=carried or {}))


def test_revert_removes_exactly_one_commits_contribution(store):
    a = edit(store, 1, {"s": torch.tensor([1.5, 2.0]), "n": torch.tensor([1.0])})
    edit(store, 2, {"s": torch.tensor([0.25, -4.0]), "n": torch.tensor([1.0])})
    before_a = store.carried_state("HEAD~2")
    assert before_a == {}
    store.write_commit(CommitInput("revert a", op="revert", reverts=a))
    state = store.carried_state()
    assert torch.equal(state["s"], torch.tensor([0.25, -4.0])) and torch.equal(state["n"], torch.tensor([1.0]))
    # an older revision sums its own live commits
    assert torch.equal(store.carried_state("HEAD~1")["s"], torch.tensor([1.75, -2.0]))
    assert store.fsck() == []


def test_commit_then_revert_gives_back_the_state_before_exactly(store):
    edit(store, 1, {"s": torch.tensor([0.1, 0.2, 0.3])})
    before = store.carried_state()
    sha = edit(store, 2, {"s": torch.tensor([1e-3, 7.0, -2.5]), "t": torch.ones(2, 2)})
    store.write_commit(CommitInput("revert", op="revert", reverts=sha))
    after = store.carried_state()
    assert set(after) == set(before) and all(torch.equal(after[n], before[n]) for n in before)
    # revert of the revert: the state comes back
    store.write_commit(CommitInput("re-apply", op="revert", reverts=store.head()))
    assert torch.equal(store.carried_state()["t"], torch.ones(2, 2))


def test_no_carried_state_writes_no_file_and_no_manifest_entry(store):
    edit(store, 1)
    record = store.read_commit("HEAD")
    assert CARRIED_FILE not in record.files and "carried" not in record.manifest
    assert record.carried() == {} and store.carried_state() == {}


def test_a_squash_carries_the_sum_of_what_it_squashes(store):
    edit(store, 1, {"s": torch.tensor([1.0, 2.0])})
    b = edit(store, 2, {"s": torch.tensor([10.0, 20.0])})
    edit(store, 3, {"s": torch.tensor([100.0, 200.0])})
    store.write_commit(CommitInput("revert b", op="revert", reverts=b))
    edit(store, 4, {"s": torch.tensor([1000.0, 0.0])})
    chain = store.chain()
    net = store.read_commit(chain[1]).delta()
    for sha in chain[2:5]:
        net = net.compose(store.read_commit(sha).delta())
    store.write_commit(CommitInput("squash", net, op="squash", squash_range=(chain[0], chain[4])))
    assert torch.equal(store.read_commit("HEAD~1").carried()["s"], torch.tensor([101.0, 202.0]))
    assert torch.equal(store.carried_state()["s"], torch.tensor([1101.0, 202.0]))
    assert store.fsck() == []


def test_mismatched_shapes_are_refused(store):
    edit(store, 1, {"s": torch.zeros(2)})
    edit(store, 2, {"s": torch.zeros(3)})
    with pytest.raises(Exception, match="shape"):
        store.carried_state()


def _rewrite_head_file(store, name: str, data: bytes) -> None:
    """Replace one file of HEAD's tree (a damaged store, as a disk or a hand edit leaves it)."""
    head = store.head()
    files = {n: gitio.blob_bytes(b) for n, b in gitio.read_files(store.repo, head).items()}
    files[name] = data
    commit = store.repo.commit(head)
    sha = gitio.write_commit(store.repo, gitio.write_tree(store.repo, files), [p.hexsha for p in commit.parents],
                             "damaged")
    gitio.set_ref(store.repo, gitio.branch_ref(store.repo), sha, head, store.paths.tmp)


@pytest.mark.parametrize("damage", ["flip", "truncate", "missing-entry"])
def test_fsck_catches_a_damaged_carried_file(store, damage):
    from kedit_vc.store import Store
    from kedit_vc.store.carried import carried_to_bytes

    edit(store, 1, {"s": torch.tensor([1.0, 2.0, 3.0])})
    data = gitio.blob_bytes(gitio.read_files(store.repo, store.head())[CARRIED_FILE])
    if damage == "flip":  # still valid safetensors, different numbers: only the hash tells
        bad = carried_to_bytes({"s": torch.tensor([1.0, 2.0, 3.5])})
    elif damage == "truncate":
        bad = data[: len(data) // 2]
    else:
        bad = data
    _rewrite_head_file(store, CARRIED_FILE, bad)
    if damage == "missing-entry":
        manifest = store.manifest("HEAD")
        del manifest["carried"]
        from kedit_vc.store.manifest import dumps

        _rewrite_head_file(store, MANIFEST_FILE, dumps(manifest))
    with Store(store.paths.root) as fresh:
        problems = [p for p in fresh.fsck() if "carried" in p]
        assert problems, fresh.fsck()
        with pytest.raises(Exception, match="carried"):
            fresh.read_commit("HEAD").carried()


OPS = history_ops(max_size=8)


@settings(max_examples=20, deadline=None)
@given(OPS)
def test_carried_state_is_the_sum_over_live_commits(ops):
    """Random histories: the state equals the sum over live commits of what each carries,
    and also the running sum of every contribution minus every reverted one."""
    with tempfile.TemporaryDirectory() as root, init_store(root, "m", "fp") as store:
        expected: dict[str, torch.Tensor] = {}
        for op in ops:
            if op[0] == "edit":
                part = contribution(op[1])
                store.write_commit(CommitInput("edit", small_delta(op[1]), carried=part))
                add(expected, part)
            else:
                head = store.head()
                random_step(store, op, {})
                if op[0] == "revert" and store.head() != head:
                    add(expected, store.read_commit(store.read_commit("HEAD").reverts).carried(), -1.0)
            live: dict[str, torch.Tensor] = {}
            for sha in store.live_commits():
                add(live, store.read_commit(sha).carried())
            assert_state(store.carried_state(), live)
            assert_state(store.carried_state(), expected)
        assert store.fsck() == []

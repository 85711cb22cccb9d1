"""Joint ROME from a range's own commits (ops/squash_parts.py): the closed form on the parts'
keys and targets meets every part's target at once, its "tip" targets give back the
composition exactly, and low-rank truncation is the best approximation of its rank."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kedit_vc.delta import Delta
from kedit_vc.delta.updates import LowRank
from kedit_vc.editors.rome.algorithm import rome_update
from kedit_vc.ops.squash_parts import Part, joint_from_parts, key_errors, parts_delta, truncate


def sequential_rome(n: int, seed: int, d_out: int = 7, d_in: int = 11
                    ) -> tuple[torch.Tensor, list[Part], torch.Tensor, torch.Tensor]:
    """n ROME edits made one after another, each on the weights the last left (as n commits
    are): the base W0 [d_out, d_in], the parts, their targets V [n, d_out] and keys [n, d_in]."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    a = torch.randn(d_in, d_in, generator=g, dtype=torch.float64)
    mom2 = a @ a.T / d_in + 0.1 * torch.eye(d_in, dtype=torch.float64)          # C, SPD [d_in, d_in]
    keys = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    targets = torch.randn(n, d_out, generator=g, dtype=torch.float64)
    parts, current = [], weight.clone()
    for i in range(n):
        left, right = rome_update(current, keys[i], targets[i], mom2, ridge=0.0)
        current = current + torch.outer(left, right)
        parts.append(Part("w", left[:, None], right[:, None], keys[i][None], transposed=False))
    return weight, parts, targets, keys


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_the_joint_solve_on_the_parts_targets_meets_every_target_at_once(n: int, seed: int) -> None:
    weight, parts, targets, keys = sequential_rome(n, seed)
    left, right = joint_from_parts(parts, "parts")
    reached = keys @ (weight + left @ right.T).T                                  # [n, d_out]
    torch.testing.assert_close(reached, targets, rtol=1e-8, atol=1e-8 * float(targets.abs().max()))
    # ROME of one edit is the joint solve of one: the same update.
    one_left, one_right = joint_from_parts(parts[:1], "parts")
    torch.testing.assert_close(one_left @ one_right.T, parts[0].left @ parts[0].right.T)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_the_joint_solve_on_the_tips_targets_is_the_composition(n: int, seed: int) -> None:
    _, parts, _, _ = sequential_rome(n, seed)
    left, right = joint_from_parts(parts, "tip")
    composed = sum(p.left @ p.right.T for p in parts)
    torch.testing.assert_close(left @ right.T, composed, rtol=1e-8, atol=1e-9 * float(composed.abs().max()))


def test_the_parts_solve_differs_from_the_composition_by_the_later_parts_cross_talk() -> None:
    weight, parts, targets, keys = sequential_rome(4, seed=3)
    composed = Delta({"w": LowRank(torch.cat([p.left for p in parts], 1).float(),
                                   torch.cat([p.right for p in parts], 1).float())})
    solved = parts_delta(parts, "parts")
    errors = key_errors(composed, solved, parts)
    assert errors[-1] < 1e-5  # the last part's key sees no later part
    assert max(errors[:-1]) > 1e-3  # earlier keys lose the cross-talk the tip has


def test_keys_that_are_not_independent_are_refused() -> None:
    _, parts, _, _ = sequential_rome(2, seed=1)
    twin = Part("w", parts[1].left, parts[0].right * 2.0, parts[0].keys, transposed=False)
    with pytest.raises(ValueError, match="not independent"):
        joint_from_parts([parts[0], twin])
    with pytest.raises(ValueError, match="targets"):
        joint_from_parts(parts, "optimised")


@settings(max_examples=25, deadline=None)
@given(rank=st.integers(2, 6), keep=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_truncation_is_the_best_approximation_of_its_rank(rank: int, keep: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    update = LowRank(torch.randn(9, rank, generator=g), torch.randn(13, rank, generator=g))
    small = truncate(Delta({"w": update}), keep)
    if keep >= rank:
        assert small is None
        return
    assert small is not None
    (cut,) = small.updates.values()
    assert cut.rank == keep and cut.dtype == update.dtype
    values = torch.linalg.svdvals(update.dense().double())
    error = torch.linalg.matrix_norm(cut.dense().double() - update.dense().double())
    # Eckart–Young: the error is exactly the singular values left out.
    torch.testing.assert_close(error, values[keep:].norm(), rtol=1e-4, atol=1e-5)

"""Small helpers shared by the store tests: random deltas and dense sums."""

from __future__ import annotations

import torch

from delta_strategies import SHAPES, random_update
from kedit_vc.delta import Delta


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

"""Helpers for the remote, bisect and blame tests: cheap commits at the tiny Llama's real
shapes (through the store's Python API, no editor run), and HEAD's logits."""

from __future__ import annotations

from pathlib import Path

import torch

from kedit_vc.delta import Delta, Dense, LowRank
from kedit_vc.store import CommitInput, Store

#: Parameters of the tiny Llama (conftest.save_tiny_llama) that the cheap commits touch.
SHAPES = {"model.layers.1.mlp.down_proj.weight": (64, 128), "model.layers.2.mlp.down_proj.weight": (64, 128)}
IDS = torch.tensor([[5, 17, 42, 99, 123, 7, 250, 64]])


def cheap_delta(seed: int, scale: float = 1e-2, dense: bool = False) -> Delta:
    """A rank-one (or dense) update of one of ``SHAPES``, chosen by ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    name = sorted(SHAPES)[seed % len(SHAPES)]
    rows, cols = SHAPES[name]
    if dense:
        return Delta({name: Dense(scale * torch.randn(rows, cols, generator=gen))})
    return Delta({name: LowRank(scale * torch.randn(rows, 1, generator=gen), torch.randn(cols, 1, generator=gen))})


def commit_delta(store: Store, delta: Delta, message: str) -> str:
    return store.write_commit(CommitInput(message, delta, edit_ids=(message.replace(" ", "-"),)))


def head_logits(store: Store, model_dir: Path) -> torch.Tensor:
    """Logits [1, t, V] of the tiny model at the store's HEAD, materialised as a checkout does."""
    from kedit_vc.models import load_model
    from kedit_vc.ops.weights import Weights

    loaded = load_model(str(model_dir), progress=False)
    Weights(loaded.model).set_deltas([store.live_sum()])
    with torch.no_grad():
        return loaded.model(IDS).logits

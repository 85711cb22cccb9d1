"""Hypothesis strategies for small random deltas and toy models (shared by delta/store tests)."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from kedit_vc.delta import Delta, Dense, LowRank

SHAPES = {  # a toy model's parameters: one GPT-2 style Conv1D [in, out], one Linear, a bias
    "h.0.mlp.c_proj.weight": (6, 4),
    "model.layers.1.mlp.down_proj.weight": (3, 7),
    "model.layers.1.mlp.down_proj.bias": (3,),
}


def toy_model(shapes=SHAPES, seed: int = 0, dtype=torch.float32) -> torch.nn.Module:
    """A module whose state_dict has exactly ``shapes`` (dotted names become submodules)."""
    gen = torch.Generator().manual_seed(seed)
    root = torch.nn.Module()
    for name, shape in shapes.items():
        *path, leaf = name.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, torch.nn.Module())
            module = getattr(module, part)
        module.register_parameter(leaf, torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=dtype)))
    return root


def random_update(shape, kind: str, rank: int, seed: int, scale: float = 0.1, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    if kind == "lowrank" and len(shape) == 2:
        return LowRank(scale * torch.randn(shape[0], rank, generator=gen, dtype=dtype),
                       scale * torch.randn(shape[1], rank, generator=gen, dtype=dtype))
    return Dense(scale * torch.randn(shape, generator=gen, dtype=dtype))


@st.composite
def deltas(draw, shapes=SHAPES, dtypes=(torch.float32,), min_size: int = 1) -> Delta:
    """A delta over a random non-empty subset of ``shapes``, mixing low-rank and dense."""
    names = draw(st.lists(st.sampled_from(sorted(shapes)), min_size=min_size, unique=True))
    dtype = draw(st.sampled_from(dtypes))
    updates = {
        name: random_update(
            shapes[name],
            draw(st.sampled_from(["lowrank", "dense"])),
            draw(st.integers(1, 3)),
            draw(st.integers(0, 2**31 - 1)),
            dtype=dtype,
        )
        for name in names
    }
    meta = draw(st.dictionaries(st.sampled_from(["method", "edit", "note"]), st.text(max_size=8), max_size=2))
    return Delta(updates, meta)

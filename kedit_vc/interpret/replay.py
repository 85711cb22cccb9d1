"""Start a forward pass part-way up the stack, from a hidden state we already have.

Causal tracing restores one (token, layer) state per batch row on top of a corrupted
run. Below the restored layer every row is the same corrupted computation, so instead of
recomputing it we patch the lower blocks: blocks ``0..start-2`` pass their input through
and block ``start-1`` returns the recorded corrupted output. Only blocks ``start..`` run.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch

from kedit_vc.models.families import blocks_of


@contextmanager
def start_at(model: torch.nn.Module, start: int, hidden: torch.Tensor | None, template: Any) -> Iterator[None]:
    """While inside, forwards begin at block ``start`` with input ``hidden`` [b, t, d].

    ``template`` is one recorded raw block output: blocks may return a tensor or a
    tuple, and the patched ones must return the same shape of thing. ``start == 0``
    (or ``hidden`` None) patches nothing.
    """
    if start <= 0 or hidden is None:
        yield
        return
    blocks = blocks_of(model)
    patched = []

    def wrap(tensor: torch.Tensor) -> Any:
        return (tensor,) + tuple(template[1:]) if isinstance(template, tuple) else tensor

    def passthrough(*args: Any, **kwargs: Any) -> Any:
        return wrap(args[0] if args else kwargs["hidden_states"])

    try:
        for index in range(start):
            block = blocks[index]
            block.forward = (lambda *a, **k: wrap(hidden)) if index == start - 1 else passthrough
            patched.append(block)
        yield
    finally:
        for block in patched:
            del block.forward

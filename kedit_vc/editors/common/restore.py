"""Leave the model exactly as found: editors apply intermediate updates while solving.

Adding and then subtracting a float32 update does not give back the same bits, so the
touched parameters are copied before and written back after, whatever happens.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch


@contextmanager
def restored_parameters(model: torch.nn.Module, names: Sequence[str]) -> Iterator[None]:
    params = dict(model.named_parameters())
    saved = {name: params[name].detach().clone() for name in names}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)

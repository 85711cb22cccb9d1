"""Adding updates to a model's parameters in place, checked before anything changes."""

from __future__ import annotations

import difflib
from typing import Mapping

import torch

from .errors import DeltaError
from .updates import LowRank, Update, product_dtype


def _check_fits(params: Mapping[str, torch.Tensor], updates: Mapping[str, Update]) -> None:
    """Refuse the whole delta before touching a weight if any name or shape is wrong."""
    for name, update in updates.items():
        if name not in params:
            close = difflib.get_close_matches(name, list(params), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise DeltaError(
                f"the delta updates {name!r}, which this model does not have{hint} "
                "(was the delta made for another model?)"
            )
        if tuple(params[name].shape) != tuple(update.shape):
            raise DeltaError(
                f"the delta's update of {name!r} has shape {tuple(update.shape)}, "
                f"the model's parameter {tuple(params[name].shape)} (was it made for another model?)"
            )


def _dense_on(update: Update, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(update, LowRank):
        return update.left.to(device, dtype) @ update.right.to(device, dtype).T
    return update.value.to(device, dtype)


def apply_updates(model: torch.nn.Module, updates: Mapping[str, Update], alpha: float = 1.0) -> None:
    """``param += alpha * update`` for each update, under ``no_grad``, in the parameter's dtype.

    The sum is formed in the wider of the update's and the parameter's dtype, float32 at
    least, and rounded once, so a bfloat16 model is not rounded twice. One dense update exists at a time.
    """
    params = model.state_dict(keep_vars=True)
    _check_fits(params, updates)
    with torch.no_grad():
        for name, update in updates.items():
            param = params[name]
            compute = product_dtype(torch.promote_types(update.dtype, param.dtype))
            dense = _dense_on(update, compute, param.device)
            if compute == param.dtype:
                param.add_(dense, alpha=alpha)
            else:
                param.copy_(param.to(compute).add_(dense, alpha=alpha))

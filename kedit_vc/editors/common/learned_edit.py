"""The edit path MEND and KE share: gradient factors in, the trained network, a low-rank delta out.

Each learned editor differs only in how its network turns the edit's gradient factors
(``u``: inputs (T, d_in), ``δ``: output gradients (T, d_out) per edited layer, T the edit's
target tokens) into update factors; everything around that call is the same, so it lives here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.editors.base import EditResult
from kedit_vc.errors import EditError

from .learned import factors_to_delta, gradient_factors
from .metatrain import request_batch


def edit_with_network(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest], method: str,
                      layers: Sequence[int], trained_hash: str, fingerprint: str,
                      update: Callable[[Any], Any]) -> EditResult:
    """One forward and backward pass for the factors, one network call (``update``), the delta.

    The commit records ``trained_hash`` so an edit names the trained editor that made it.
    """
    started = time.perf_counter()
    factors, pre_nll = gradient_factors(model, layers, request_batch(tokenizer, requests))
    if any(factors.u[layer].shape[0] == 0 for layer in layers):
        raise EditError(f"{method.upper()}: the edit's loss has no gradient at the edited layers")
    with torch.no_grad():
        factor_update = update(factors)
    delta = factors_to_delta(model, factor_update, {"method": method, "trained_editor": trained_hash})
    info = {"layers": list(layers), "rank": int(factors.u[layers[0]].shape[0]), "pre_nll": round(pre_nll, 4),
            "trained_editor": trained_hash, "editor_seconds": round(time.perf_counter() - started, 4)}
    return EditResult(delta=delta, info=info, fingerprint=fingerprint)

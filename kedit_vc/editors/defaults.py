"""Default hyperparameters per model family and size, in one place.

Values not given in a spec come from here; the SmolLM2 choices are backed by the sweep
in ``bench/sweep_rome_layers.py`` (results in ``bench/results/``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from kedit_vc.models.families import dimensions, family_of

#: Fractions of depth, from the reference settings (GPT-J: ROME layer 5/28, MEMIT 3..8/28)
#: and our SmolLM2 sweep.
ROME_LAYER_FRACTION = 0.15
MEMIT_LAYER_FRACTIONS = (0.07, 0.2)
FT_LAYER_FRACTION = 0.15
STATS_TOKENS = 50_000


def rome_layer(model: torch.nn.Module) -> int:
    return max(0, round(dimensions(model).n_layers * ROME_LAYER_FRACTION))


def memit_layers(model: torch.nn.Module) -> tuple[int, ...]:
    n = dimensions(model).n_layers
    low, high = (max(0, round(n * f)) for f in MEMIT_LAYER_FRACTIONS)
    return tuple(range(low, max(low, high) + 1))


def resolve(method: str, model: torch.nn.Module, hparams: Any) -> Any:
    """Fill the ``None`` fields of ``hparams`` with this model's defaults."""
    family_of(model)
    updates: dict[str, Any] = {}
    if getattr(hparams, "stats_tokens", 0) is None:
        updates["stats_tokens"] = STATS_TOKENS
    if method in ("rome",) and hparams.layer is None:
        updates["layer"] = rome_layer(model)
    if method in ("ft",) and hparams.layer is None:
        updates["layer"] = max(0, round(dimensions(model).n_layers * FT_LAYER_FRACTION))
    if method in ("memit", "alphaedit") and hparams.layers is None:
        updates["layers"] = memit_layers(model)
    return replace(hparams, **updates) if updates else hparams

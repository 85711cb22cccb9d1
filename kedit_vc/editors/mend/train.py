"""What ``kvc train mend`` needs of MEND: its network, fresh, with the trainer's settings."""

from __future__ import annotations

from typing import Any

import torch

from kedit_vc.editors.common.learned import edited_layers
from kedit_vc.editors.common.metatrain import TrainSettings

from .algorithm import build_network
from .hparams import MendHparams, network_settings

#: MEND's initial per-layer step η (the reference implementation's ``edit_lr``).
EDIT_LR = 1e-4


def fresh(model: torch.nn.Module, hp: MendHparams, settings: TrainSettings) -> tuple[Any, tuple[int, ...], dict]:
    """(untrained network, edited layers, the settings that key the trained editor)."""
    torch.manual_seed(settings.seed)
    layers = edited_layers(model, hp.layers)
    return build_network(model, hp, EDIT_LR), layers, network_settings(hp, layers)

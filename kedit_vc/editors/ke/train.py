"""What ``kvc train ke`` needs of KE: its hypernetwork, fresh."""

from __future__ import annotations

from typing import Any

import torch

from kedit_vc.editors.common.learned import edited_layers
from kedit_vc.editors.common.metatrain import TrainSettings

from .algorithm import build_network
from .hparams import KeHparams, network_settings


def fresh(model: torch.nn.Module, hp: KeHparams, settings: TrainSettings) -> tuple[Any, tuple[int, ...], dict]:
    """(untrained network, edited layers, the settings that key the trained editor)."""
    torch.manual_seed(settings.seed)
    layers = edited_layers(model, hp.layers)
    return build_network(model, hp), layers, network_settings(hp, layers)

"""MEND's edit: one forward and backward pass for the gradient factors, one network call.

The trained network (``kvc train mend``) maps the edit's gradient factors at each edited
layer to pseudo-factors, and the update ``ΔW_l = −η_l Σ_t δ̃_t ũ_tᵀ`` is stored as low-rank
factors (rank ≤ the edit's tokens). Several requests in one call are one batched edit,
their losses summed (MEND's batch editing).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.editors.base import EditContext, EditResult, base_fingerprint
from kedit_vc.editors.common.learned import (
    TrainedEditor,
    edited_layers,
    layer_shapes,
    load_editor,
)
from kedit_vc.editors.common.learned_edit import edit_with_network

from .hparams import MendHparams, network_settings
from .network import MendNetwork


def build_network(model: torch.nn.Module, hp: MendHparams, edit_lr: float = 1e-4) -> MendNetwork:
    layers = edited_layers(model, hp.layers)
    return MendNetwork(layers, layer_shapes(model, layers), hp.rank, hp.n_hidden, edit_lr)


def load_network(model: torch.nn.Module, hp: MendHparams, fingerprint: str) -> tuple[MendNetwork, TrainedEditor]:
    """The trained network for this base model and settings (errors name ``kvc train mend``)."""
    layers = edited_layers(model, hp.layers)
    trained = load_editor("mend", fingerprint, network_settings(hp, layers), hp.editor)
    network = build_network(model, hp)
    network.load_state_dict(dict(trained.tensors))
    return network.eval(), trained


class MendEditor:
    name = "mend"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: MendHparams, context: EditContext) -> EditResult:
        fingerprint = base_fingerprint(model, context)
        network, trained = load_network(model, hparams, fingerprint)
        return edit_with_network(model, tokenizer, requests, "mend", network.layers, trained.hash, fingerprint,
                                 lambda factors: network.factors(factors))

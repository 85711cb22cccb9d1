"""KE's edit: the edit's gradient factors and its text through the trained hypernetwork.

The update (``network.KeNetwork``) is low rank, ≤ the edit's tokens + 1 per layer, and
stored as factors. Several requests in one call are one edit: their losses are summed
and their texts joined into one condition.
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
from kedit_vc.editors.common.metatrain import condition_ids

from .hparams import KeHparams, network_settings
from .network import KeNetwork


def build_network(model: torch.nn.Module, hp: KeHparams) -> KeNetwork:
    layers = edited_layers(model, hp.layers)
    get_embeddings: Any = model.get_input_embeddings  # a transformers model's token embedding
    embedding = get_embeddings()
    return KeNetwork(embedding, layers, layer_shapes(model, layers), hp.lstm_hidden, hp.condition_dim, hp.hidden,
                     hp.max_scale)


def load_network(model: torch.nn.Module, hp: KeHparams, fingerprint: str) -> tuple[KeNetwork, TrainedEditor]:
    layers = edited_layers(model, hp.layers)
    trained = load_editor("ke", fingerprint, network_settings(hp, layers), hp.editor)
    network = build_network(model, hp)
    network.load_state_dict(dict(trained.tensors))
    return network.eval(), trained


class KeEditor:
    name = "ke"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: KeHparams, context: EditContext) -> EditResult:
        fingerprint = base_fingerprint(model, context)
        network, trained = load_network(model, hparams, fingerprint)
        ids = torch.tensor([t for r in requests for t in condition_ids(tokenizer, r)], dtype=torch.long)
        return edit_with_network(model, tokenizer, requests, "ke", network.layers, trained.hash, fingerprint,
                                 lambda factors: network.factors(factors, ids))

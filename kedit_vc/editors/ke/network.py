"""KnowledgeEditor's hypernetwork (De Cao et al. 2021, arXiv 2104.08164, section 3).

A bidirectional LSTM reads the edit's text (rewrite prompt, old object, new object, as
the reference's "x || y || a") embedded with the base model's own token embeddings, and
a tanh layer turns its final states into a condition c. For each edited weight W
[d_out, d_in] a conditioned MLP maps c to vectors α_r [d_out], α_c [d_in], β_r [d_out],
β_c [d_in] and a scalar η, and the update is

    ΔW = −s · σ(η) · (∇W ⊙ (softmax(α_r) α_cᵀ) + softmax(β_r) β_cᵀ)

with ∇W the fine-tuning gradient of the edit and s the maximum scale. With ∇W = Σ_t δ_t
u_tᵀ this is ``Σ_t (softmax(α_r) ⊙ δ_t)(α_c ⊙ u_t)ᵀ`` plus a rank-one term: low rank
(≤ tokens + 1), so it is stored as factors.

Simplification (stated in --help, README): the token embeddings are the base model's,
frozen (the reference initialises a trainable copy from them); the KL constraint of the
paper's objective is a fixed-weight penalty (``--c-loc``), not a learned Lagrange multiplier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from kedit_vc.editors.common.learned import GradientFactors


class ConditionedUpdate(nn.Module):
    """c [cond] -> (α_c [d_in], α_r [d_out], β_c [d_in], β_r [d_out], η [1]) for one weight."""

    def __init__(self, d_in: int, d_out: int, condition_dim: int, hidden: int) -> None:
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        self.net = nn.Sequential(weight_norm(nn.Linear(condition_dim, hidden)), nn.Tanh(),
                                 weight_norm(nn.Linear(hidden, 2 * (d_in + d_out) + 1)))

    def forward(self, condition: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.net(condition).split([self.d_in, self.d_out, self.d_in, self.d_out, 1], -1))


class KeNetwork(nn.Module):
    """The bi-LSTM conditioner and one ``ConditionedUpdate`` per edited layer."""

    def __init__(self, embedding: nn.Embedding, layers: Sequence[int], shapes: Sequence[tuple[int, int]],
                 lstm_hidden: int, condition_dim: int, hidden: int, max_scale: float) -> None:
        super().__init__()
        self._embedding = [embedding]  # the base model's, frozen and not saved with the editor
        self.layers = tuple(layers)
        self.max_scale = max_scale
        self.lstm = nn.LSTM(embedding.embedding_dim, lstm_hidden, batch_first=True, bidirectional=True)
        self.condition = nn.Sequential(nn.Linear(2 * lstm_hidden, condition_dim), nn.Tanh())
        self.updates = nn.ModuleDict({str(layer): ConditionedUpdate(d_in, d_out, condition_dim, hidden)
                                      for layer, (d_in, d_out) in zip(self.layers, shapes)})

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """The condition c [condition_dim] of the edit text's token ids [n]."""
        with torch.no_grad():
            embedded = self._embedding[0](ids[None]).float()  # [1, n, d_model]
        _, (h_n, _) = self.lstm(embedded)  # h_n [2, 1, hidden]: last forward and backward states
        return self.condition(torch.cat([h_n[0, 0], h_n[1, 0]], -1))

    def conditioned(self, condition: torch.Tensor) -> dict[int, tuple[torch.Tensor, ...]]:
        """layer -> (α_c, α_r, β_c, β_r, η) for a condition."""
        return {layer: self.updates[str(layer)](condition) for layer in self.layers}

    def factors(self, factors: GradientFactors, condition: torch.Tensor | None = None
                ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """layer -> (left [d_out, T+1], right [d_in, T+1]) with ``left @ rightᵀ = ΔW``."""
        if condition is None:
            raise ValueError("KE needs the edit's text ids")
        out = {}
        for layer, (a_c, a_r, b_c, b_r, eta) in self.conditioned(self.encode(condition)).items():
            scale = -self.max_scale * torch.sigmoid(eta)
            u, d = factors.u[layer], factors.delta[layer]  # [T, d_in], [T, d_out]
            left = torch.cat([a_r.softmax(-1)[:, None] * d.T, b_r.softmax(-1)[:, None]], 1) * scale
            right = torch.cat([a_c[:, None] * u.T, b_c[:, None]], 1)
            out[layer] = (left, right)
        return out

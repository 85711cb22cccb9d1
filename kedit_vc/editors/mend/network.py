"""MEND's editor network (Mitchell et al. 2022, arXiv 2110.11309, section 3).

For each shape of edited weight ([d_out, d_in]) one ``GradientTransform`` maps a token's
gradient factors (u [d_in], δ [d_out]) to pseudo-factors (ũ, δ̃): both are normalised
with running statistics gathered during training, concatenated, and passed through an
identity-initialised MLP of low-rank layers with a per-layer ("mode") scale and shift,
so layers of one shape share a network. The update of layer l is
``ΔW_l = −η_l Σ_t δ̃_t ũ_tᵀ`` with a learned step η_l per layer: rank ≤ the edit's tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kedit_vc.editors.common.learned import GradientFactors


class LowRankIdentityLayer(nn.Module):
    """``x + act(scale_m ⊙ (U V x + b) + shift_m)`` with U = 0 at init, so the layer starts
    as the identity; ``m`` picks the edited layer's scale [dim] and shift [dim]."""

    def __init__(self, dim: int, rank: int, relu: bool, modes: int) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.zeros(dim, rank))
        self.v = nn.Parameter(nn.init.xavier_uniform_(torch.empty(rank, dim)))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.scale = nn.Parameter(torch.ones(modes, dim))
        self.shift = nn.Parameter(torch.zeros(modes, dim))
        self.relu = relu

    def forward(self, x: torch.Tensor, mode: int) -> torch.Tensor:
        pre = (x @ self.v.T) @ self.u.T + self.bias
        pre = pre * self.scale[mode] + self.shift[mode]
        return x + (torch.relu(pre) if self.relu else pre)


class GradientTransform(nn.Module):
    """(u [T, d_in], δ [T, d_out]) -> (ũ, δ̃) for every edited layer of one shape."""

    count: torch.Tensor
    u_mean: torch.Tensor
    u_m2: torch.Tensor
    d_mean: torch.Tensor
    d_m2: torch.Tensor

    def __init__(self, d_in: int, d_out: int, rank: int, n_hidden: int, modes: int) -> None:
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        dim = d_in + d_out
        self.mlp = nn.ModuleList([LowRankIdentityLayer(dim, rank, relu=i < n_hidden, modes=modes)
                                  for i in range(n_hidden + 1)])
        # Running mean and sum of squared deviations (Welford) of u and δ, over training tokens.
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("u_mean", torch.zeros(d_in, dtype=torch.float64))
        self.register_buffer("u_m2", torch.zeros(d_in, dtype=torch.float64))
        self.register_buffer("d_mean", torch.zeros(d_out, dtype=torch.float64))
        self.register_buffer("d_m2", torch.zeros(d_out, dtype=torch.float64))

    def observe(self, u: torch.Tensor, delta: torch.Tensor) -> None:
        """Fold a batch of tokens into the running statistics (Chan's parallel update)."""
        n_b = u.shape[0]
        if n_b == 0:
            return
        n_a = float(self.count)
        n = n_a + n_b
        for mean, m2, x in ((self.u_mean, self.u_m2, u), (self.d_mean, self.d_m2, delta)):
            x = x.detach().double()
            mean_b = x.mean(0)
            m2_b = ((x - mean_b) ** 2).sum(0)
            shift = mean_b - mean
            mean += shift * n_b / n
            m2 += m2_b + shift ** 2 * n_a * n_b / n
        self.count.fill_(n)

    def normalise(self, u: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if float(self.count) < 2:
            raise RuntimeError("MEND's input normalisation needs statistics of at least 2 tokens")
        n = float(self.count) - 1
        u_std = (self.u_m2 / n).sqrt().float()
        d_std = (self.d_m2 / n).sqrt().float()
        return ((u - self.u_mean.float()) / (u_std + 1e-7), (delta - self.d_mean.float()) / (d_std + 1e-7))

    def forward(self, u: torch.Tensor, delta: torch.Tensor, mode: int) -> tuple[torch.Tensor, torch.Tensor]:
        u_n, d_n = self.normalise(u.float(), delta.float())
        x = torch.cat([u_n, d_n], -1)
        for layer in self.mlp:
            x = layer(x, mode)
        return x[:, :self.d_in], x[:, self.d_in:]


def shape_key(d_in: int, d_out: int) -> str:
    return f"{d_in}x{d_out}"


class MendNetwork(nn.Module):
    """One ``GradientTransform`` per weight shape and one learned step η_l per edited layer."""

    def __init__(self, layers: Sequence[int], shapes: Sequence[tuple[int, int]], rank: int, n_hidden: int,
                 edit_lr: float) -> None:
        super().__init__()
        self.layers = tuple(layers)
        self.shapes = tuple(shapes)  # per layer (d_in, d_out)
        keys = sorted({shape_key(*s) for s in shapes})
        self.modes = {layer: [k for k, s in zip(self.layers, shapes) if shape_key(*s) == shape_key(*shape)
                              ].index(layer) for layer, shape in zip(self.layers, shapes)}
        counts = {k: sum(1 for s in shapes if shape_key(*s) == k) for k in keys}
        dims = {shape_key(*s): s for s in shapes}
        self.transforms = nn.ModuleDict({k: GradientTransform(dims[k][0], dims[k][1], rank, n_hidden, counts[k])
                                         for k in keys})
        self.edit_lrs = nn.Parameter(torch.full((len(self.layers),), float(edit_lr)))

    def transform_of(self, layer: int) -> GradientTransform:
        shape = self.shapes[self.layers.index(layer)]
        module = self.transforms[shape_key(*shape)]
        assert isinstance(module, GradientTransform)
        return module

    def observe(self, factors: GradientFactors) -> None:
        for layer in self.layers:
            self.transform_of(layer).observe(factors.u[layer], factors.delta[layer])

    def pseudo_factors(self, factors: GradientFactors) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """layer -> (ũ [T, d_in], δ̃ [T, d_out])."""
        return {layer: self.transform_of(layer)(factors.u[layer], factors.delta[layer], self.modes[layer])
                for layer in self.layers}

    def factors(self, factors: GradientFactors, condition: torch.Tensor | None = None
                ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """layer -> (left [d_out, T], right [d_in, T]) with ``left @ rightᵀ = −η_l Σ_t δ̃_t ũ_tᵀ``."""
        out = {}
        for index, (layer, (u_t, d_t)) in enumerate(self.pseudo_factors(factors).items()):
            out[layer] = (-self.edit_lrs[index] * d_t.T, u_t.T)
        return out

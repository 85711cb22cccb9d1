"""Norm-anchor scaling (NAS, arXiv 2602.02543) of MEMIT / AlphaEdit value vectors.

In a long sequential history the solved value vectors ``v* = v0 + δ`` (the MLP output
wanted at the top edited layer, at the subject's last token) and the edited weights
amplify each other: heavier weights give larger ``v0``, larger targets give heavier
weights, and the norms grow until the model collapses. NAS breaks the loop by rescaling
every ``v*`` to one norm fixed by the original model, the *anchor*, before the layers are
solved; the residual part of the target (``z0 − v0``, what the blocks below put in the
stream) is left alone, so only the MLP's share of the target is re-normed.

Our anchor is the root-mean-square norm of the top edited layer's original MLP outputs
over the covariance sample, ``sqrt(E‖W k‖²) = sqrt(tr(W C Wᵀ))`` with ``C = E[k kᵀ]``
(the statistics MEMIT already has), times ``scale``. The paper's anchor is the mean
norm of value vectors solved on the original model for a sample of CounterFact rewrites
(an extra optimisation pass over data we do not ship); both are fixed by the unedited
model, which is what breaks the feedback. The anchor is cached beside the statistics,
keyed like them by the base fingerprint, so the first NAS edit of a history (on the
base model) fixes it for every later one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from kedit_vc.fsio import atomic_write_text
from kedit_vc.models.cache import cache_root
from kedit_vc.models.families import mlp_out_weight
from kedit_vc.stats import key_second_moments
from kedit_vc.stats.corpus import corpus_id


def anchor_values(v0: torch.Tensor, delta: torch.Tensor, anchor: float) -> torch.Tensor:
    """``v*`` rescaled to norm ``anchor``, returned as the change from ``v0``: [n, d].

    ``v0`` [n, d]: the MLP outputs now; ``delta`` [n, d]: the optimised change. A zero
    ``v*`` (which has no direction) is left as it is.
    """
    v_star = v0 + delta
    norms = v_star.norm(dim=-1, keepdim=True)
    factor = torch.where(norms > 0, anchor / norms.clamp_min(torch.finfo(norms.dtype).tiny),
                         torch.ones_like(norms))
    return v_star * factor - v0


def value_norm_anchor(model: torch.nn.Module, tokenizer: Any, fingerprint: str, layer: int,
                      stats_tokens: int, stats_dir: str | None = None, progress: bool = True) -> float:
    """``sqrt(tr(W C Wᵀ))`` of block ``layer``'s MLP output projection, cached per base model.

    The first call for a fingerprint computes it from the weights in hand (the base
    model at a history's first NAS edit) and writes it; later calls, on edited weights,
    read it back, so it stays the original model's.
    """
    corpus = os.environ.get("KVC_STATS_TEXT") or None
    root = Path(stats_dir) if stats_dir else cache_root() / "stats"
    path = (root / fingerprint.replace(":", "-") / corpus_id(corpus, 0)
            / f"nas-anchor-layer{layer:03d}-n{stats_tokens}.json")
    if path.is_file():
        try:
            value = float(json.loads(path.read_text())["anchor"])
            if value > 0:
                return value
        except (ValueError, KeyError, TypeError):  # a truncated or foreign file: recompute
            pass
    mom2 = key_second_moments(model, tokenizer, fingerprint, [layer], stats_tokens, stats_dir=stats_dir,
                              progress=progress)[layer].double()
    weight = mlp_out_weight(model, layer).detach().double()          # [d_model, d_mlp]
    value = float((weight * (weight @ mom2)).sum().clamp_min(0).sqrt())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"anchor": value, "layer": layer, "tokens": stats_tokens}))
    return value

"""The null-space projection of a layer's key statistics, cached beside them.

``P = U Uᵀ`` [d_mlp, d_mlp] over the eigenvectors of ``C = E[k kᵀ]`` with the smallest
eigenvalues, taken while their sum stays within ``threshold × trace(C)``: the directions
that hold at most that fraction of a typical key's energy ``E‖k‖²``. An update with
``ΔW = ΔW P`` leaves ``W k`` unchanged for keys in the span of the other eigenvectors
and moves a typical key's output by at most ``‖ΔW‖ √(threshold · E‖k‖²)``.

Why an energy fraction rather than the reference's absolute cut (eigenvalue < 2e-2,
set for GPT-J/Llama3 keys on Wikipedia) or a fraction of the largest eigenvalue: key
scales differ between models, and key spectra have outlier directions (SmolLM2 layer 2:
λ_max = 133 against a median of 0.005), so λ/λ_max < 1e-2 keeps 1534 of 1536 directions
and protects nothing, while an absolute 2e-2 keeps 75-88% of them holding 30-55% of the
key energy on layers 3-6. A budget on energy is scale-free and ignores outliers.
The default 0.1 (with α = 1) took 10/10 of ten sequential dev edits (CounterFact
records 400-409; paraphrase 0.95, neighbourhood 0.46 against 0.49 before), where 0.03
with the reference's α = 10 took 9/10 (0.90, 0.47): subject keys keep only ~13% of their
energy (‖Pk‖² ≈ 6) in a 3% null space, so α = 10 outweighs them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from kedit_vc.fsio import atomic_path
from kedit_vc.models.cache import cache_root
from kedit_vc.stats import key_second_moments
from kedit_vc.stats.corpus import corpus_id
from kedit_vc.stats.covariance import _cache_file


def null_space_projection(mom2: torch.Tensor, threshold: float) -> tuple[torch.Tensor, int]:
    """``(P [d, d] float64, dim)`` onto the smallest-eigenvalue directions of ``mom2``
    whose eigenvalues sum to at most ``threshold × trace``."""
    values, vectors = torch.linalg.eigh(mom2.double())          # ascending
    share = torch.cumsum(values.clamp(min=0), 0) / values.clamp(min=0).sum()
    basis = vectors[:, share <= threshold]                      # [d, dim]
    return basis @ basis.T, basis.shape[1]


def _projection_file(stats_dir: str | os.PathLike[str] | None, fingerprint: str, layer: int,
                     n_tokens: int, threshold: float) -> Path:
    """Beside the statistics file it derives from, keyed the same way plus the threshold."""
    root = Path(stats_dir) if stats_dir else cache_root() / "stats"
    cid = corpus_id(os.environ.get("KVC_STATS_TEXT") or None, 0)
    stats = _cache_file(root, fingerprint, layer, cid, n_tokens)
    return stats.with_name(f"{stats.stem}-null{threshold:g}.safetensors")


def _read(path: Path) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.get_tensor("projection")
    except Exception:  # noqa: BLE001 - truncated or foreign: recompute rather than trust it
        return None


def null_space_projections(model: torch.nn.Module, tokenizer: Any, fingerprint: str,
                           layers: Sequence[int], n_tokens: int, threshold: float,
                           stats_dir: str | None = None, progress: bool = True,
                           ) -> dict[int, torch.Tensor]:
    """layer -> ``P`` [d_mlp, d_mlp] (float32), computed once per statistics file and threshold."""
    paths = {layer: _projection_file(stats_dir, fingerprint, layer, n_tokens, threshold) for layer in layers}
    found = {layer: p for layer in layers if (p := _read(paths[layer])) is not None}
    missing = [layer for layer in layers if layer not in found]
    if missing:
        mom2 = key_second_moments(model, tokenizer, fingerprint, missing, n_tokens,
                                  stats_dir=stats_dir, progress=progress)
        for layer in missing:
            projection, dim = null_space_projection(mom2[layer], threshold)
            found[layer] = projection.float().contiguous()
            path = paths[layer]
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                save_file({"projection": found[layer]}, str(tmp),
                          metadata={"threshold": f"{threshold:g}", "null_dim": str(dim), "fingerprint": fingerprint})
    return {layer: found[layer] for layer in layers}

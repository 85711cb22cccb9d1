"""A squash's re-solve from the range's own commits, and a smaller form of a squash delta.

A ROME commit stores everything its constraint needs: its key ``k`` (``CommitRecord.keys``)
and its update ``l (C⁻¹k)ᵀ``, whose right factor is the key's covariance-whitened direction
``p = C⁻¹k`` (``rome_update``). Joint ROME's closed form for keys ``K`` [d_in, n] and
residuals ``R`` [d_out, n] is ``ΔW = R (KᵀC⁻¹K)⁻¹ (C⁻¹K)ᵀ``; with the parts' right factors
``P`` [d_in, n] (each column ``C⁻¹kᵢ`` up to a scale) it is ``ΔW = R (PᵀK)⁻¹ Pᵀ`` exactly (the
scales cancel), so the re-solve needs no model, no covariance and no target optimisation:

- targets ``"parts"``: each part's own target, ``vᵢ = W_{i-1} kᵢ + Δᵢ kᵢ`` (what its commit
  wrote on the weights before it), i.e. ``Rᵢ = Σ_{j≤i} Δⱼ kᵢ``: the later parts' cross-talk
  on key i is removed.
- targets ``"tip"``: what the range's tip reaches, ``Rᵢ = Σⱼ Δⱼ kᵢ``. Then
  ``R = L PᵀK`` and ``ΔW = L Pᵀ``: the composition itself (why ``auto`` composes rather than
  calling this a re-solve; ``tests/test_squash_parts.py`` checks the identity).

``truncate`` is the other way to a smaller patch: the best rank-r approximation (SVD) of a
low-rank update, for the squash gate to judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from kedit_vc.delta import Delta
    from kedit_vc.store import Store

#: Targets a parts re-solve can aim at (module docstring).
TARGETS = ("parts", "tip")
#: ``PᵀK`` worse conditioned than this (two parts writing one subject's key) is not solved.
MAX_CONDITION = 1e8


@dataclass(frozen=True)
class Part:
    """One live commit of the range, in the Linear layout of its one parameter ``name``:
    ``left`` [d_out, r], ``right`` [d_in, r] (``ΔW = left rightᵀ``), ``keys`` [r, d_in]."""

    name: str
    left: torch.Tensor
    right: torch.Tensor
    keys: torch.Tensor
    transposed: bool  # the parameter is [d_in, d_out] (GPT-2's Conv1D): factors swap back


def range_parts(store: "Store", inside: Sequence[str], tip: str) -> list[Part] | None:
    """The range's live commits (live at ``tip``) as ``Part``s, oldest first, or None when a
    parts re-solve does not apply: a commit with more or other than one low-rank update, the
    updates on different parameters, keys at more than one layer or not one per factor column.
    """
    from kedit_vc.delta.updates import LowRank

    parts = []
    for sha in store.live_commits(tip):
        if sha not in inside:
            continue
        record = store.read_commit(sha)
        delta, keys = record.delta(), record.keys()
        if delta is None or len(delta.updates) != 1 or len(keys) != 1:
            return None
        ((name, update),) = delta.updates.items()
        (k,) = keys.values()                                       # [m, d_in]
        if not isinstance(update, LowRank) or update.rank != k.shape[0]:
            return None
        rows, cols = update.shape
        if cols == k.shape[1] and rows != k.shape[1]:
            left, right, transposed = update.left, update.right, False
        elif rows == k.shape[1] and cols != k.shape[1]:
            left, right, transposed = update.right, update.left, True
        else:
            return None  # a square matrix: which side is the key's cannot be told
        parts.append(Part(name, left.double(), right.double(), k.double(), transposed))
    if not parts or len({p.name for p in parts}) != 1 or len({p.transposed for p in parts}) != 1:
        return None
    return parts


def joint_from_parts(parts: Sequence[Part], targets: str = "parts") -> tuple[torch.Tensor, torch.Tensor]:
    """Factors (left [d_out, n], right [d_in, n], float64, Linear layout) of joint ROME's
    update through every part's key at once: ``(W + left rightᵀ) kᵢ = W kᵢ + Rᵢ`` for each
    key, ``right`` the parts' own right factors ``P`` (module docstring for ``targets``).

    Raises ``ValueError`` when ``PᵀK`` is singular or worse conditioned than ``MAX_CONDITION``.
    """
    if targets not in TARGETS:
        raise ValueError(f"targets must be one of {', '.join(TARGETS)}, not {targets!r}")
    right = torch.cat([p.right for p in parts], dim=1)                    # P [d_in, n]
    keys = torch.cat([p.keys for p in parts], dim=0).T                    # K [d_in, n]
    system = right.T @ keys                                                # PᵀK [n, n]
    condition = float(torch.linalg.cond(system))
    if not condition < MAX_CONDITION:
        raise ValueError(f"the parts' keys are not independent (condition number {condition:.3g})")
    columns: list[torch.Tensor] = []
    for i, part in enumerate(parts):
        upto = parts if targets == "tip" else parts[: i + 1]
        column = torch.zeros(part.left.shape[0], part.keys.shape[0], dtype=torch.float64)
        for p in upto:
            column += p.left @ (p.right.T @ part.keys.T)
        columns.append(column)                                             # Rᵢ [d_out, mᵢ]
    residual = torch.cat(columns, dim=1)                                    # R [d_out, n]
    left = torch.linalg.solve(system.T, residual.T).T                       # R (PᵀK)⁻¹ [d_out, n]
    return left, right


def parts_delta(parts: Sequence[Part], targets: str = "parts") -> "Delta":
    """``joint_from_parts`` as a float32 ``Delta`` on the parts' parameter, in its layout."""
    from kedit_vc.delta import Delta
    from kedit_vc.delta.updates import LowRank

    left, right = joint_from_parts(parts, targets)
    if parts[0].transposed:
        left, right = right, left
    return Delta({parts[0].name: LowRank(left.float().contiguous(), right.float().contiguous())},
                 {"method": "joint_rome", "targets": targets})


def truncate(delta: "Delta", rank: int) -> "Delta | None":
    """``delta`` with each low-rank update of rank above ``rank`` replaced by its best rank-``rank``
    approximation (Eckart–Young: the leading singular triplets of ``left rightᵀ``, found from
    thin QRs of the factors, float64), or None when no update is above ``rank``.
    The singular values go to ``left``; whether every edit survives is for the gate to say."""
    from kedit_vc.delta import Delta
    from kedit_vc.delta.updates import LowRank

    updates = dict(delta.updates)
    changed = False
    for name, update in delta.updates.items():
        if not isinstance(update, LowRank) or update.rank <= rank:
            continue
        q_left, r_left = torch.linalg.qr(update.left.double())              # [rows, r], [r, r]
        q_right, r_right = torch.linalg.qr(update.right.double())           # [cols, r], [r, r]
        u, s, vh = torch.linalg.svd(r_left @ r_right.T)                      # core [r, r]
        left = q_left @ (u[:, :rank] * s[:rank])                             # [rows, rank]
        right = q_right @ vh[:rank].T                                        # [cols, rank]
        updates[name] = LowRank(left.to(update.dtype).contiguous(), right.to(update.dtype).contiguous())
        changed = True
    return Delta(updates, dict(delta.meta)) if changed else None


def key_errors(delta: "Delta", approx: "Delta", parts: Sequence[Part]) -> list[float]:
    """Per part key: ``‖(ΔW' − ΔW) k‖ / ‖ΔW k‖`` (the relative change an approximation ``approx``
    makes to what the squash writes at that key; a cheap screen before the gate)."""
    name, transposed = parts[0].name, parts[0].transposed
    exact, near = (u.dense().double() for u in (delta.updates[name], approx.updates[name]))
    if not transposed:
        exact, near = exact.T, near.T                                       # [d_in, d_out] either way
    keys = torch.cat([p.keys for p in parts], dim=0)                        # [n, d_in]
    want = keys @ exact                                                     # [n, d_out]
    return ((keys @ near - want).norm(dim=1) / want.norm(dim=1).clamp_min(1e-30)).tolist()

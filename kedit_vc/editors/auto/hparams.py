"""``auto``'s hyperparameters (no torch import).

The default candidates are the registered methods that declare a ``candidate_rank``,
in that order, so a method joins ``auto`` from its own folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kedit_vc.editors.common.hparams import (
    METHOD_HPARAMS,
    METHODS,
    PROBE_WEIGHTS,
    hparam,
)


def default_candidates() -> tuple[str, ...]:
    """Registered methods with a ``candidate_rank``, lowest first."""
    from kedit_vc.editors.registry import method_names, method_spec

    ranked = [(method_spec(n).candidate_rank, n) for n in method_names() if method_spec(n).candidate_rank is not None]
    return tuple(name for _, name in sorted(ranked))


@dataclass(frozen=True)
class AutoHparams:
    """``auto``: choose the editor by a weighted score on the edit's own probes."""

    weights: Mapping[str, float] | None = hparam(
        None, "metric -> weight of the choice's score (None: the four headline metrics, equally)",
        kind=PROBE_WEIGHTS)
    candidates: tuple[str, ...] = hparam(
        help="methods tried, in order (ties go to the earlier); default: the registered candidates",
        kind=METHODS, default_factory=default_candidates)
    hparams: Mapping[str, Mapping[str, Any]] | None = hparam(
        None, "candidate -> its hyperparameters", kind=METHOD_HPARAMS)


def check(hp: AutoHparams) -> list[str]:
    """Candidates and their hyperparameters, as ``candidate_settings`` checks them."""
    from kedit_vc.errors import UsageError

    from .choose import candidate_settings

    try:
        candidate_settings(hp)
    except UsageError as error:
        return [str(error)]
    return []

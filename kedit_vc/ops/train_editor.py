"""Train a learned editor (``kvc train mend|ke``) for a base model and cache it.

The trained editor goes to ``<cache>/editors/<method>/<key>/`` (key: method, base-model
fingerprint, network settings) unless ``out`` names a folder; every store of the same
base model then finds it. Training is resumable: run the same command again after a kill.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kedit_vc.editors.common.metatrain import DataSplit, TrainOutcome, TrainSettings, load_split, train_network
from kedit_vc.editors.registry import build_hparams, check_hparams
from kedit_vc.errors import UsageError

LEARNED = ("mend", "ke")


def train_editor(method: str, model_ref: str, data: Sequence[str], hparams: Mapping[str, Any],
                 settings: TrainSettings, held_out: int = 100, limit: int | None = None, out: str | None = None,
                 progress: bool = True, loaded: Any = None, stop_after: int | None = None) -> TrainOutcome:
    """Train (or resume, or reuse) ``method``'s network on ``data`` for ``model_ref``."""
    from kedit_vc.models.loading import load_model

    if method not in LEARNED:
        raise UsageError(f"'{method}' has no trained network (learned editors: {', '.join(LEARNED)})")
    if settings.steps < 1 or settings.edits_per_step < 1:
        raise UsageError("--steps and --edits-per-step must be >= 1")
    try:
        hp = build_hparams(method, hparams)
    except TypeError as error:
        raise UsageError(f"--hparam: {error}") from None
    problems = check_hparams(method, hp)
    if problems:
        raise UsageError("; ".join(problems))
    split = load_split(data, held_out, limit)
    lm = loaded if loaded is not None else load_model(model_ref, progress=progress)
    return train_split(method, lm.model, lm.tokenizer, lm.fingerprint, split, hp, settings, out, model_ref,
                       progress, stop_after)


def train_split(method: str, model: Any, tokenizer: Any, fingerprint: str, split: DataSplit, hp: Any,
                settings: TrainSettings, out: str | None = None, model_ref: str = "", progress: bool = False,
                stop_after: int | None = None) -> TrainOutcome:
    """Train ``method``'s network on ``split`` for a model in hand (``fingerprint``: its base's)."""
    from kedit_vc.editors.common.learned import default_editor_dir

    adapter = importlib.import_module(f"kedit_vc.editors.{method}.train")
    network, layers, net_settings = adapter.fresh(model, hp, settings)
    folder = Path(out).expanduser() if out else default_editor_dir(method, fingerprint, net_settings)
    record = {"method": method, "fingerprint": fingerprint, "settings": net_settings, "model": model_ref}
    return train_network(network, model, tokenizer, layers, split, settings, folder, record,
                         progress=progress, stop_after=stop_after)

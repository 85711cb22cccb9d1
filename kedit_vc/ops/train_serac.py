"""Use case ``kvc train serac``: read edit records, train (or resume, or reuse) the scope classifier."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.errors import UsageError


def read_requests(sources: Sequence[str]) -> list[EditRequest]:
    """Edit records from ``sources``: each a spec file, or ``KIND:FILE`` for any format
    ``kvc import`` reads (counterfact, zsre, mquake, easyedit, table), optionally with a
    record range ``KIND:FILE@START:END``."""
    from kedit_vc.compiler import compile_file, compile_text
    from kedit_vc.importers import IMPORTERS, import_file

    out: list[EditRequest] = []
    for source in sources:
        path, start, end = source, None, None
        if "@" in source:
            path, _, span = source.rpartition("@")
            try:
                low, _, high = span.partition(":")
                start, end = (int(low) if low else None), (int(high) if high else None)
            except ValueError:
                raise UsageError(f"--data {source}: a record range is @START:END, e.g. @300:500") from None
        kind, _, file = path.partition(":")
        if file and kind in IMPORTERS:
            if not os.path.isfile(file):
                raise UsageError(f"--data {source}: no such file {file}")
            imported = import_file(kind, file, limit=end)
            requests = list(compile_text(imported.text, path=file, directory=os.path.dirname(file) or ".").requests)
        else:
            if not os.path.isfile(path):
                raise UsageError(f"--data {source}: no such file (give a spec, or KIND:FILE with KIND one of "
                                 f"{', '.join(IMPORTERS)})")
            requests = list(compile_file(path).requests)
        out += requests[start:end] if start is not None else requests
    if len(out) < 2:
        raise UsageError(f"--data gave {len(out)} edit record(s); the scope classifier needs at least 2 "
                         "(other records' prompts are its negatives)")
    return out


@dataclass(frozen=True)
class TrainReport:
    """What ``kvc train serac`` prints."""

    folder: Path
    cached: bool
    meta: dict[str, Any]


def train_serac(model_ref: str, sources: Sequence[str], overrides: dict[str, Any], progress: bool,
                trust_pickle: bool = False) -> TrainReport:
    """Train the classifier for ``model_ref`` on ``sources`` with training ``overrides``."""
    from dataclasses import fields

    from kedit_vc.editors.common.hparams import depth_layer
    from kedit_vc.editors.ike.hparams import LAYER_FRACTION
    from kedit_vc.editors.serac.classifier import TrainSettings, train
    from kedit_vc.models import load_model
    from kedit_vc.models.families import dimensions

    requests = read_requests(sources)
    loaded = load_model(model_ref, trust_pickle=trust_pickle, progress=progress)
    model = loaded.model
    dims = dimensions(model)
    layer = overrides.pop("layer", None)
    layer = depth_layer(model, LAYER_FRACTION) if layer is None else layer
    if not 0 <= layer < dims.n_layers:
        raise UsageError(f"--layer {layer} is outside the model's blocks 0..{dims.n_layers - 1}")
    hidden = int(dims.d_model)
    rank = overrides.pop("rank", None) or hidden
    if not 1 <= rank <= hidden:
        raise UsageError(f"--rank must be in 1..{hidden} (the model's width), got {rank}")
    known = {f.name for f in fields(TrainSettings)}
    settings = TrainSettings(layer=layer, rank=rank, **{k: v for k, v in overrides.items() if k in known})
    if settings.steps < 1 or settings.batch_size < 1 or settings.checkpoint_every < 1 or settings.lr <= 0:
        raise UsageError("--steps, --batch-size and --checkpoint-every must be >= 1 and --lr > 0")
    if not 0.0 <= settings.holdout < 1.0:
        raise UsageError(f"--holdout must be in [0, 1), got {settings.holdout}")
    classifier, folder, cached = train(model, loaded.tokenizer, requests, loaded.fingerprint, settings,
                                       list(sources), progress=progress)
    return TrainReport(folder, cached, dict(classifier.meta))

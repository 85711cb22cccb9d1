"""Look inside a model and an edit: causal tracing, logit lens, SelfIE readouts.

Each tool returns plain data (frozen dataclasses with ``to_json``); ``plots`` draws
them and ``render`` prints them. Everything encodes through ``models.prompting`` so
positions agree with the editors'. This package reads models and never opens a store:
explaining a commit of the store is an op (``kedit_vc.ops.explain``).

>>> trace = causal_trace(model, tok, "The Eiffel Tower is located in the city of", "Eiffel Tower", "Paris")
>>> plot_trace(trace, "trace.png"); trace.suggested_layer
>>> suggest_layer(model, tok, request)          # for `layer = auto`
>>> explain_edit(model, tok, request, delta)    # lens + SelfIE before/after

Names are imported on first use (PEP 562), so ``kedit_vc.interpret.defaults`` can be
read without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "causal_trace": "trace", "suggest_layer": "trace", "TraceResult": "trace",
    "logit_lens": "lens", "LensResult": "lens",
    "selfie": "readout", "selfie_readout": "readout", "subject_state": "readout", "SelfieResult": "readout",
    "explain_edit": "explain", "edited_layers": "explain", "applied": "explain",
    "Explanation": "explain", "Reading": "explain",
    "plot_trace": "plots", "plot_lens": "plots", "plot_explanation": "plots",
    "KINDS": "defaults",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)

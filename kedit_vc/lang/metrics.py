"""Metric names a spec may mention (``expect``, ``auto`` weights) and their bounds.

The names are the metrics registry's (``kedit_vc.eval.registry``, torch-free): the
headline families, CounterFact's own names, their generative and raw-prompt twins, and
the model-level fluency and perplexity. Each maps to the bounds a threshold must lie
in: rates are in [0, 1]; fluency (n-gram entropy of generations) and perplexity are
only non-negative.
"""

from __future__ import annotations

import math

from kedit_vc.eval.registry import CF_HEADLINES, GENERATIVE, HEADLINES, raw

_RATES = (*HEADLINES, *CF_HEADLINES, *GENERATIVE, *raw(HEADLINES), *raw(GENERATIVE))

METRICS: dict[str, tuple[float, float]] = {
    **{name: (0.0, 1.0) for name in _RATES},
    "fluency": (0.0, math.inf),
    "perplexity": (0.0, math.inf),
}

#: Operators of ``expect METRIC OP NUMBER``.
COMPARISONS = (">=", ">", "<=", "<")

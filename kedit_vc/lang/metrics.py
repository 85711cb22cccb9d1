"""Metric names a spec may mention (``expect``, ``auto`` weights), kept in one place.

Each name maps to the bounds a threshold must lie in: rates are in [0, 1]; fluency
(n-gram entropy of generations) and perplexity are only non-negative.
"""

from __future__ import annotations

import math

METRICS: dict[str, tuple[float, float]] = {
    "reliability": (0.0, 1.0),
    "generalization": (0.0, 1.0),
    "locality": (0.0, 1.0),
    "portability": (0.0, 1.0),
    "efficacy": (0.0, 1.0),
    "paraphrase": (0.0, 1.0),
    "neighbourhood": (0.0, 1.0),
    "gen_reliability": (0.0, 1.0),
    "gen_generalization": (0.0, 1.0),
    "gen_locality": (0.0, 1.0),
    "gen_portability": (0.0, 1.0),
    "raw_reliability": (0.0, 1.0),
    "raw_generalization": (0.0, 1.0),
    "raw_locality": (0.0, 1.0),
    "raw_portability": (0.0, 1.0),
    "raw_gen_reliability": (0.0, 1.0),
    "raw_gen_generalization": (0.0, 1.0),
    "raw_gen_locality": (0.0, 1.0),
    "raw_gen_portability": (0.0, 1.0),
    "fluency": (0.0, math.inf),
    "perplexity": (0.0, math.inf),
}

#: Operators of ``expect METRIC OP NUMBER``.
COMPARISONS = (">=", ">", "<=", "<")

"""Defaults and choices of the interpretability tools (no torch: the CLI reads them for --help)."""

from __future__ import annotations

KINDS = ("residual", "mlp", "attn")
#: Layers restored together for the mlp/attn kinds (the ROME paper used 10 of GPT-2 XL's 48).
DEFAULT_WINDOW = 5
DEFAULT_SAMPLES = 3
#: Noise std = this times the std of the embedding matrix's entries (ROME: 3x).
NOISE_FACTOR = 3.0
#: Tokens a SelfIE readout generates at most.
MAX_NEW_TOKENS = 16

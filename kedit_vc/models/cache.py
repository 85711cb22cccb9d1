"""Where kedit_vc keeps dequantized models, fingerprints and statistics."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$KVC_CACHE`` if set, else the user's cache directory (e.g. ~/.cache/kedit_vc)."""
    configured = os.environ.get("KVC_CACHE")
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("kedit_vc"))

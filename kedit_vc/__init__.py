"""kedit_vc: declarative knowledge edits for language models, versioned like code."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load_edited(store_dir: Any = ".", rev: str = "HEAD", progress: bool = False, device: str | None = None,
                dtype: str | None = None, device_map: str | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)``: revision ``rev`` of the store at ``store_dir`` with every live
    patch applied (see ``kedit_vc.ops.load``; torch loads on first call)."""
    from kedit_vc.ops.load import load_edited as load

    return load(store_dir, rev, progress, device=device, dtype=dtype, device_map=device_map)

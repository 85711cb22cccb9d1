"""``kvc init``: a store that records how to load the base model and its fingerprint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kedit_vc.store import Store


def stable_ref(ref: str) -> str:
    """A model folder or file is recorded by absolute path, so any working directory finds it."""
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


def init(directory: str | os.PathLike[str], model_ref: str, progress: bool = False) -> "Store":
    """Load ``model_ref`` once to fingerprint it, then create ``<directory>/.kvc``."""
    from kedit_vc.models import load_model
    from kedit_vc.store import init_store
    from kedit_vc.store.layout import StorePaths

    paths = StorePaths(Path(directory).resolve())
    if paths.kvc.exists():
        from kedit_vc.errors import StoreError

        raise StoreError(f"{paths.kvc} already exists; this directory has a kvc store")
    ref = stable_ref(model_ref)
    loaded = load_model(ref, progress=progress)
    return init_store(directory, ref, loaded.fingerprint)

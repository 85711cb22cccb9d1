"""Writing an output folder all at once: staged beside the target, renamed into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from kedit_vc.errors import UsageError
from kedit_vc.fsio import publish_dir


@contextmanager
def staged_dir(target: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder that becomes ``target`` when the block succeeds.

    An existing non-empty ``target`` is refused unless ``force``; an interrupted export
    leaves no half-written folder.
    """
    out = Path(target).resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {target}: a file is in the way; choose a folder name")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"-o {target} exists and is not empty; choose another folder or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".kvc-export", dir=out.parent))
    try:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        publish_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

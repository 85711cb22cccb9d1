"""Benchmark importers: one module per format, found by name in ``IMPORTERS``.

Adding a format means adding one module with ``NAME`` and ``convert(records, limit,
source)`` and listing it here.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from kedit_vc.errors import UsageError

from . import counterfact, mquake, zsre
from .base import ImportDataError, ImportResult, read_records

Converter = Callable[[list[dict[str, Any]], "int | None", str], ImportResult]

IMPORTERS: dict[str, Converter] = {m.NAME: m.convert for m in (counterfact, zsre, mquake)}


def import_file(kind: str, path: str | os.PathLike[str], limit: int | None = None) -> ImportResult:
    """The spec for the records of ``path`` in format ``kind``."""
    if kind not in IMPORTERS:
        raise UsageError(f"unknown import format '{kind}' (known: {', '.join(IMPORTERS)})")
    if limit is not None and limit < 0:
        raise UsageError("--limit must be >= 0")
    records = read_records(path)
    try:
        return IMPORTERS[kind](records, limit, os.path.basename(os.fspath(path)))
    except (KeyError, TypeError, AttributeError, IndexError) as error:
        raise ImportDataError(f"{path} does not look like {kind} data ({type(error).__name__}: {error})") from None


__all__ = ["IMPORTERS", "ImportDataError", "ImportResult", "import_file"]

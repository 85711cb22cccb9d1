"""Importers: one module per format, found by name in ``IMPORTERS``.

Adding a format means adding one module with ``NAME`` and ``convert(records, limit,
source)`` and listing it here. A module that reports problems at the records' lines
takes ``path`` (and, for tables, reads its own rows with ``read``).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from kedit_vc.errors import UsageError

from . import counterfact, easyedit, mquake, table, zsre
from .base import ImportDataError, ImportResult, Problems, read_records

IMPORTERS: dict[str, ModuleType] = {m.NAME: m for m in (counterfact, zsre, mquake, easyedit, table)}
#: Importers that locate each bad record and take ``path``.
LOCATED = frozenset({easyedit.NAME, table.NAME})


def import_file(kind: str, path: str | os.PathLike[str], limit: int | None = None,
                fmt: str | None = None) -> ImportResult:
    """The spec for the records of ``path`` in format ``kind`` (``fmt``: a table's csv|jsonl)."""
    if kind not in IMPORTERS:
        raise UsageError(f"unknown import format '{kind}' (known: {', '.join(IMPORTERS)})")
    if limit is not None and limit < 0:
        raise UsageError("--limit must be >= 0")
    if fmt is not None and kind != table.NAME:
        raise UsageError("--format applies to 'kvc import table' only")
    source = os.path.basename(os.fspath(path))
    if kind == table.NAME:
        problems = Problems(path)
        rows = table.read(path, fmt, problems)
        return table.convert(rows, limit, source, os.fspath(path), problems)
    records = read_records(path)
    try:
        dicts: list[dict[str, Any]] = list(records)
        if kind in LOCATED:
            return IMPORTERS[kind].convert(dicts, limit, source, os.fspath(path))
        return IMPORTERS[kind].convert(dicts, limit, source)
    except (KeyError, TypeError, AttributeError, IndexError) as error:
        raise ImportDataError(f"{path} does not look like {kind} data ({type(error).__name__}: {error})") from None


__all__ = ["IMPORTERS", "ImportDataError", "ImportResult", "import_file"]

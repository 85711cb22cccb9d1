"""User-facing errors: values a user can act on, printed without a traceback.

Every module raises a subclass of ``KvcError``; the CLI catches it at one place, prints
``str(error)`` and exits with ``error.exit_code``. Anything else escaping is a bug.
"""

from __future__ import annotations


class KvcError(Exception):
    """An error the user can fix; ``str()`` is the whole message.

    ``label`` is printed before it; errors whose message already says where and what
    (a spec report: ``facts.kedit:3:5: error: ...``) set it empty.
    """

    exit_code: int = 1
    label: str = "error: "


class UsageError(KvcError):
    """Bad flags or arguments (exit 2, as click does)."""

    exit_code = 2


class ModelError(KvcError):
    """A model reference that cannot be resolved or loaded."""


class StoreError(KvcError):
    """The .kvc store is missing, locked, or inconsistent."""


class EditError(KvcError):
    """An editor could not carry out a request."""

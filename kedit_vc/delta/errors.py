"""The one error type of the delta package."""

from __future__ import annotations

from kedit_vc.errors import KvcError


class DeltaError(KvcError):
    """A delta that does not fit a model, or a delta file that is malformed or altered."""

"""AlphaEdit: null-space-constrained MEMIT (algorithm, projection cache, registration)."""

from kedit_vc.editors.base import register_editor

from .algorithm import AlphaeditEditor, alphaedit_layer_update
from .projection import null_space_projection, null_space_projections

register_editor("alphaedit", AlphaeditEditor)

__all__ = ["AlphaeditEditor", "alphaedit_layer_update", "null_space_projection", "null_space_projections"]

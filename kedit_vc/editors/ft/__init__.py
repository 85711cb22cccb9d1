"""FT-L: constrained fine-tuning baseline (algorithm + registration)."""

from kedit_vc.editors.base import register_editor

from .algorithm import FtEditor

register_editor("ft", FtEditor)

__all__ = ["FtEditor"]

"""ROME: rank-one model editing (one folder per method: algorithm + registration)."""

from kedit_vc.editors.base import register_editor

from .algorithm import RomeEditor, rome_update

register_editor("rome", RomeEditor)

__all__ = ["RomeEditor", "rome_update"]

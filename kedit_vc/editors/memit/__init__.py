"""MEMIT: mass-editing memory in a transformer (algorithm + registration)."""

from kedit_vc.editors.base import register_editor

from .algorithm import MemitEditor, memit_layer_update

register_editor("memit", MemitEditor)

__all__ = ["MemitEditor", "memit_layer_update"]

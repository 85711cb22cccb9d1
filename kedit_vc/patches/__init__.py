"""Patch kinds: what a commit may record besides (or instead of) a weight delta.

``delta`` (a ``kedit_vc.delta.Delta``, added to the weights) and ``codebook`` (GRACE's
entries at one module, attached as a forward hook) are registered in ``registry``; a new
kind is one folder here. ``attach`` puts the live non-weight patches of a revision on a model.
"""

from .registry import Patch, PatchError, PatchKind, decode, kind_names, register_kind, require_kind

__all__ = ["Patch", "PatchError", "PatchKind", "decode", "kind_names", "register_kind", "require_kind"]

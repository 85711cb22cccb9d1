"""AlphaEdit: null-space-constrained MEMIT (registration only; algorithm and projection
cache load on first use)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import AlphaeditHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import AlphaeditEditor

    return AlphaeditEditor()


register_method(MethodSpec(
    name="alphaedit", hparams_class=AlphaeditHparams, factory=_editor, resolve=resolve, check=check,
    summary="MEMIT with the update projected onto the keys' null space (Fang et al. 2025)"))

"""MEND: gradient decomposition with a trained editor network (registration only)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import MendHparams, check


def _editor() -> Editor:
    from .algorithm import MendEditor

    return MendEditor()


register_method(MethodSpec(
    name="mend", hparams_class=MendHparams, factory=_editor, check=check,
    summary="trained editor network turning the edit's gradient into a low-rank update (kvc train mend first)"))

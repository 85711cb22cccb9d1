"""MemPrompt: a memory of corrections prepended when it applies (registration only)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import MemPromptHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import MemPromptEditor

    return MemPromptEditor()


register_method(MethodSpec(
    name="memprompt", hparams_class=MemPromptHparams, factory=_editor, resolve=resolve, check=check,
    summary="edit memory of corrections, prepended only to queries it matches, weights untouched "
            "(Madaan et al. 2022)"))

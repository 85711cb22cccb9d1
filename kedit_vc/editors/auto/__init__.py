"""auto: choose the editing method by a weighted score on the edit's own probes
(registration only; the choice and the runner load on first use)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import AutoHparams, check


def _editor() -> Editor:
    from .algorithm import AutoEditor

    return AutoEditor()


register_method(MethodSpec(
    name="auto", hparams_class=AutoHparams, factory=_editor, check=check,
    summary="try each candidate method on the edit's own probes and keep the best by weighted score"))

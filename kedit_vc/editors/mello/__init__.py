"""MeLLo: edits kept as facts, read by a multi-hop question-answering loop (registration only)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import MelloHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import MelloEditor

    return MelloEditor()


register_method(MethodSpec(
    name="mello", hparams_class=MelloHparams, factory=_editor, resolve=resolve, check=check,
    summary="edit memory read by a question-decomposition loop (model.answer / kvc ask), weights untouched "
            "(Zhong et al. 2023)"))

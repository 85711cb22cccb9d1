"""KE (KnowledgeEditor): a hypernetwork conditioned on the edit text (registration only)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import KeHparams, check


def _editor() -> Editor:
    from .algorithm import KeEditor

    return KeEditor()


register_method(MethodSpec(
    name="ke", hparams_class=KeHparams, factory=_editor, check=check,
    summary="KnowledgeEditor: bi-LSTM hypernetwork turning the edit's gradient into a low-rank update "
            "(frozen base embeddings; kvc train ke first)"))

"""IKE: in-context editing with retrieved demonstrations (registration only)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import IkeHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import IkeEditor

    return IkeEditor()


register_method(MethodSpec(
    name="ike", hparams_class=IkeHparams, factory=_editor, resolve=resolve, check=check,
    summary="edit memory read in context: k retrieved copy/update/retain demonstrations, weights untouched "
            "(Zheng et al. 2023)"))

"""PMET: precise model editing in a transformer (registration only)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import PmetHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import PmetEditor

    return PmetEditor()


register_method(MethodSpec(
    name="pmet", hparams_class=PmetHparams, factory=_editor, resolve=resolve, check=check,
    summary="MEMIT with attention and MLP targets optimised jointly; only the MLP share is written, "
            "spread over the layers by 1/sqrt(layers left) (Li et al. 2024; simplified: per-request early "
            "stop instead of the reference's NLL-weight schedule)"))

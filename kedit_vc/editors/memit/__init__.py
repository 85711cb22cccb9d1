"""MEMIT: mass-editing memory in a transformer (registration only)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import MemitHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import MemitEditor

    return MemitEditor()


register_method(MethodSpec(
    name="memit", hparams_class=MemitHparams, factory=_editor, resolve=resolve, check=check, candidate_rank=1,
    summary="many facts at once, spread over a range of MLP layers (Meng et al. 2023)"))

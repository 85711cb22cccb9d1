"""FT-L: constrained fine-tuning baseline (registration only)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import FtHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import FtEditor

    return FtEditor()


register_method(MethodSpec(
    name="ft", hparams_class=FtHparams, factory=_editor, resolve=resolve, check=check, candidate_rank=2,
    summary="constrained fine-tuning of one MLP projection (the field's baseline)"))

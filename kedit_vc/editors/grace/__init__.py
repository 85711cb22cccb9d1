"""GRACE: a codebook of edits at one layer (registration only; the algorithm loads on first use)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import GraceHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import GraceEditor

    return GraceEditor()


register_method(MethodSpec(
    name="grace", hparams_class=GraceHparams, factory=_editor, resolve=resolve, check=check,
    summary="codebook of (key, value, radius) entries at one MLP output, weights untouched (Hartvigsen et al. 2023)"))

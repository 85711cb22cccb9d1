"""UltraEdit: training-free lifelong editing from one hidden state and gradient per token
(registration only)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import UltraEditHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import UltraEditEditor

    return UltraEditEditor()


register_method(MethodSpec(
    name="ultraedit", hparams_class=UltraEditHparams, factory=_editor, resolve=resolve, check=check,
    candidate_rank=3,
    summary="many facts in closed form from each token's hidden state and loss gradient, with lifelong "
            "normalisation carried by the history; no per-fact optimisation, no covariance (Gu et al. 2025)"))

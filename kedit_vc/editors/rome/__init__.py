"""ROME: rank-one model editing (registration only; the algorithm loads on first use)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import RomeHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import RomeEditor

    return RomeEditor()


register_method(MethodSpec(
    name="rome", hparams_class=RomeHparams, factory=_editor, resolve=resolve, check=check, candidate_rank=0,
    summary="rank-one update of one MLP projection per fact (Meng et al. 2022)"))

"""SERAC: edit memory + trained scope classifier + counterfactual model (registration only)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import SeracHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import SeracEditor

    return SeracEditor()


register_method(MethodSpec(
    name="serac", hparams_class=SeracHparams, factory=_editor, resolve=resolve, check=check,
    summary="edit memory routed by a trained scope classifier (embedding classifier over the frozen model); "
            "in scope, the base model reads the edit in context (no trained counterfactual model); out of scope, "
            "the base model unchanged (Mitchell et al. 2022; needs `kvc train serac`)"))

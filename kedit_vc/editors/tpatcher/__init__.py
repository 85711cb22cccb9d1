"""T-Patcher: one trained neuron per mistake beside the last MLP (registration only)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import TpatcherHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import TpatcherEditor

    return TpatcherEditor()


register_method(MethodSpec(
    name="tpatcher", hparams_class=TpatcherHparams, factory=_editor, resolve=resolve, check=check,
    summary="one ReLU neuron per edit added beside the last MLP, trained to fire on the edit's prompt and stay "
            "silent on a memory of other text, plus (our addition) the edit's declared neighbours and its relation "
            "prompt under stand-in subjects (Huang et al. 2023; a 'neurons' patch, weights untouched; "
            "plain-HF export refused)"))

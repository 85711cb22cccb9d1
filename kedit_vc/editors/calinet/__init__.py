"""CaliNet: calibration slots (FFN-like key-value neurons) beside chosen MLPs (registration only)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import CalinetHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import CalinetEditor

    return CalinetEditor()


register_method(MethodSpec(
    name="calinet", hparams_class=CalinetHparams, factory=_editor, resolve=resolve, check=check,
    summary="calibration memory: slots of the FFN's own form (gate/up keys, values) added beside chosen MLPs "
            "and trained on the edit's prompts with the model frozen (Dong et al. 2022; a 'neurons' patch, "
            "weights untouched; simplified: one slot memory per commit, prompts are the rewrite prompt under "
            "generated prefixes, plus a penalty on the slots' output over generated text and a KL term holding the "
            "edits' declared neighbour prompts to the unedited model; plain-HF export "
            "widens every MLP to hold the slots)"))

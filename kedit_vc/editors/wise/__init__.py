"""WISE: sharded side memories with an activation router (registration only; the algorithm loads on first use)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import WiseHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import WiseEditor

    return WiseEditor()


register_method(MethodSpec(
    name="wise", hparams_class=WiseHparams, factory=_editor, resolve=resolve, check=check,
    summary="WISE: a side copy of one MLP value matrix trained on the edits in knowledge shards that are "
            "TIES-merged, used where its activation passes a learned threshold (Wang et al. 2024), weights untouched"))

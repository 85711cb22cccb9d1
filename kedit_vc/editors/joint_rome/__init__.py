"""Joint ROME: ROME's equality-constrained closed form for n keys at once (registration only)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import JointRomeHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import JointRomeEditor

    return JointRomeEditor()


register_method(MethodSpec(
    name="joint_rome", hparams_class=JointRomeHparams, factory=_editor, resolve=resolve, check=check,
    summary="ROME's closed form solved for many facts at once at one layer: every key meets its target "
            "exactly (kvc squash's re-solve of ROME commits)"))

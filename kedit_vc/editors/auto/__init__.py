"""auto: choose the editing method by a weighted score on the edit's own probes
(one folder per method: the choice, the runner, registration)."""

from kedit_vc.editors.base import register_editor

from .algorithm import AutoEditor
from .choose import Choice, Trial, choose

register_editor("auto", AutoEditor)

__all__ = ["AutoEditor", "Choice", "Trial", "choose"]

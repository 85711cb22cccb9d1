"""Knowledge Neurons: attribute a fact to MLP neurons, then rewrite their value vectors
(registration only)."""

from kedit_vc.editors.base import Editor
from kedit_vc.editors.registry import MethodSpec, register_method

from .hparams import KnHparams, check, resolve


def _editor() -> Editor:
    from .algorithm import KnEditor

    return KnEditor()


register_method(MethodSpec(
    name="kn", hparams_class=KnHparams, factory=_editor, resolve=resolve, check=check,
    summary="integrated-gradients attribution to MLP neurons (upper half of the blocks), then their value "
            "vectors moved from the old answer's embedding to the new one's (Dai et al. 2022; simplified: "
            "prompts are the rewrite prompt under generated prefixes, not PARAREL paraphrases; answers by their "
            "first token; the LM head's row as embedding; at most max_neurons, the best one if none survive "
            "refinement; 5 IG steps and write weight 128 from a dev sweep, not the paper's 20 and 8)"))

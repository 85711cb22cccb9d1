"""Knowledge Neurons' hyperparameters, checks and model-dependent defaults (no torch import).

What is simplified against the paper (Dai et al., ACL 2022), also in ``--help``:
the paper's several prompts per fact are PARAREL's paraphrase templates; ours are the
rewrite prompt under ``prompts`` model-generated prefixes (the CounterFact paraphrases
are evaluation probes and stay unseen). Answers are their first token, and the
"embedding" moved is the output embedding (the LM head's row: the same matrix for a
tied model such as SmolLM2). ``max_neurons`` caps the refined set (the paper reports
about four per fact); a fact that keeps none after refinement uses its single best
neuron, so every edit writes something.

Defaults are the SmolLM2 dev sweep's choice (records 450-459, each edit alone, the best
harmonic mean of efficacy, paraphrase and neighbourhood: ``bench/results/
kn_sweep_neighbours.json``): the paper's 20 steps and 4 prompts scored lower there than 5
and 1 at twelve times the cost, every block lower than the upper half at three times, and a
write weight of 128 higher than the paper's 8 (which moved nothing: efficacy stayed at its
pre-edit 0.2) and than 16-64 or 256. On Gemma 3 270M (``kn_sweep_gemma.json``, records
450-454) 128 moved nothing and 512 moved as much as 2048 or 8192, so Gemma gets 512.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.common.hparams import hparam, layer_problems, with_model_defaults

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class KnHparams:
    """Knowledge Neurons (Dai et al. 2022): attribute, refine across prompts, then rewrite
    the value vectors (MLP down-projection columns) of the selected neurons.

    Simplified against the paper: prompts are the rewrite prompt under model-generated
    prefixes (not PARAREL paraphrases); answers count by their first token; the moved
    embedding is the LM head's row; at most ``max_neurons`` are kept, and a fact left
    with none uses its best neuron."""

    layers: tuple[int, ...] | None = hparam(None, "blocks whose MLP neurons are attributed (None: the upper "
                                                  "half, where the dev sweep found the better edits)")
    ig_steps: int = hparam(5, "Riemann steps of the integrated gradients (the paper: 20; 5 steps with 1 "
                              "prompt scored higher than 20 with 4 on the dev sweep, at a twelfth of the cost)")
    threshold: float = hparam(0.2, "per prompt, keep neurons scoring above this fraction of the largest "
                                   "attribution (the paper's adaptive t = 0.2)")
    share: float = hparam(0.5, "refinement: keep neurons selected on more than this fraction of the prompts")
    max_neurons: int = hparam(5, "at most this many neurons per fact (largest mean attribution first)")
    prompts: int = hparam(1, "generated prefixes besides the bare prompt (attribution prompts per fact; "
                             "the dev sweep found 4 no better)")
    context_length: int = hparam(10, "tokens per generated prefix")
    erase_weight: float = hparam(1.0, "lambda_1: the old answer's embedding subtracted from each value vector")
    write_weight: float | None = hparam(None, "lambda_2: the new answer's embedding added to each value vector "
                                              "(None: 128, or 512 on Gemma, whose LM-head rows are a third "
                                              "of SmolLM2's norm; the paper: 8, which moved no SmolLM2 fact "
                                              "on the dev sweep)")


def check(hp: KnHparams) -> list[str]:
    problems = layer_problems("layers", hp.layers)
    for name in ("ig_steps", "max_neurons"):
        if getattr(hp, name) < 1:
            problems.append(f"{name} must be >= 1, not {getattr(hp, name)}")
    for name in ("prompts", "context_length"):
        if getattr(hp, name) < 0:
            problems.append(f"{name} must be >= 0, not {getattr(hp, name)}")
    for name in ("threshold", "share"):
        if not 0.0 <= getattr(hp, name) < 1.0:
            problems.append(f"{name} must be in [0, 1), not {getattr(hp, name)}")
    return problems


def resolve(model: torch.nn.Module, hp: KnHparams) -> KnHparams:
    """``hp`` with the upper half of the blocks when no layers are named, and the write
    weight the dev sweep chose for this model's family when none is given."""
    from kedit_vc.models.families import num_layers

    depth = num_layers(model)
    gemma = str(getattr(model.config, "model_type", "")).startswith("gemma")
    return with_model_defaults(model, hp, layers=lambda: tuple(range(depth // 2, depth)),
                               write_weight=lambda: 512.0 if gemma else 128.0)

"""UltraEdit's hyperparameters, checks and model-dependent defaults (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kedit_vc.editors.common.hparams import depth_layers, hparam, layer_problems, with_model_defaults

if TYPE_CHECKING:
    import torch

#: Fractions of depth whose MLP projections are edited. The reference's configurations
#: edit late blocks but never the last (Gemma-3-27B 52..60 of 62, Qwen/GPT-J 18..26 of 28):
#: 80%..94% gives SmolLM2 blocks 24..28 of 30.
LAYER_FRACTIONS = (0.8, 0.94)
#: Which projection of each edited block: the family's MLP input (up) or output (down) one.
MODULE_ROLES = ("mlp_in", "mlp_out")


@dataclass(frozen=True)
class UltraEditHparams:
    """UltraEdit (Gu et al. 2025): closed-form shifts from normalised hidden states and gradients."""

    layers: tuple[int, ...] | None = hparam(None, "blocks whose MLP projections are edited (None: "
                                                  f"{LAYER_FRACTIONS[0]:.0%}..{LAYER_FRACTIONS[1]:.0%} of the depth)")
    modules: tuple[str, ...] = hparam(("mlp_out",), "which projection of each block: mlp_in (up) and/or mlp_out "
                                                   "(down); the reference edits gate and up together, our "
                                                   "families name no gate, so mlp_in is the up projection")
    lr: float = hparam(3e-4, "step size of the pseudo-value: v = -lr * |k̂|² ĝ (chosen on dev records, "
                             "bench/results/ultraedit_dev_sweep.json)")
    ridge: float = hparam(1.0, "ridge weight in ΔW = (KᵀK + ridge I)⁻¹ KᵀV (the reference's identity)")
    tokens: str = hparam("all", "which positions give keys and gradients: all (the reference's 'mask': "
                                "every token of prompt and answer, as EasyEdit's port), content (all but our "
                                "prompt prefix token) or answer (the positions that predict the answer's "
                                "tokens: the original repository's 'ans')")
    raw_copies: bool = hparam(True, "also cache each fact without the prompt prefix token, so the edit holds "
                                    "on prompts as users type them (our addition; the reference has no prefix)")
    batch_size: int = hparam(10, "facts per forward/backward pass (memory only; the loss is averaged per pass "
                                 "as the reference does)")


def check(hp: UltraEditHparams) -> list[str]:
    problems = layer_problems("layers", hp.layers)
    bad = [m for m in hp.modules if m not in MODULE_ROLES]
    if not hp.modules or bad:
        problems.append(f"modules must be a non-empty list of {', '.join(MODULE_ROLES)}, not {list(hp.modules)!r}")
    if hp.lr <= 0:
        problems.append(f"lr must be > 0, not {hp.lr}")
    if hp.ridge <= 0:
        problems.append(f"ridge must be > 0, not {hp.ridge}")
    if hp.tokens not in ("all", "content", "answer"):
        problems.append(f"tokens must be 'all', 'content' or 'answer', not {hp.tokens!r}")
    if hp.batch_size < 1:
        problems.append(f"batch_size must be >= 1, not {hp.batch_size}")
    return problems


def resolve(model: torch.nn.Module, hp: UltraEditHparams) -> UltraEditHparams:
    """``hp`` with the blocks this model gets by default."""
    return with_model_defaults(model, hp, layers=lambda: depth_layers(model, LAYER_FRACTIONS))

"""Hyperparameter building blocks shared by the methods' own ``hparams.py`` (no torch import).

``hparam(default, help)`` declares a field with its help text (``--help``, docs and the
spec checker read ``metadata["help"]``); ``kind`` tells the spec checker that a value
names other things it can check with a location: ``METHODS`` (a list of method names),
``METHOD_HPARAMS`` (method -> that method's hyperparameters) or ``PROBE_WEIGHTS``
(probe metric -> weight >= 0). ``TargetHparams`` are the eleven settings every
locate-then-edit method that optimises a target vector shares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

METHODS = "methods"
METHOD_HPARAMS = "method_hparams"
PROBE_WEIGHTS = "probe_weights"

#: Covariance sample size when a spec gives none.
STATS_TOKENS = 50_000


def hparam(default: Any = MISSING, help: str = "", *, kind: str | None = None,
           default_factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with its help text (and, for the spec checker, its value kind)."""
    if not help:
        raise ValueError("every hyperparameter needs help text")
    metadata = {"help": help, **({"kind": kind} if kind else {})}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TargetHparams:
    """The target-vector optimisation and statistics settings of the locate-then-edit methods."""

    v_steps: int = hparam(25, "Adam steps optimising the target vector")
    v_lr: float = hparam(0.5, "learning rate of the target-vector optimisation")
    v_weight_decay: float = hparam(1e-3, "weight decay of the target-vector optimisation")
    kl_factor: float = hparam(0.0625, "weight of the KL term keeping '{subject} is a' unchanged")
    clamp_norm_factor: float = hparam(4.0, "|delta| <= factor * |original output| (GPT-J's 0.75 left "
                                           "SmolLM2 edits unreached in a squash)")
    context_templates: int = hparam(10, "generated prefixes averaged over for keys and targets")
    context_length: int = hparam(10, "tokens per generated prefix")
    raw_context: bool = hparam(True, "also fit keys and targets on the bare prompt without the "
                                     "<|endoftext|> prefix, so edits hold on raw prompts too (the form "
                                     "users type to an exported model; no effect where the tokenizer "
                                     "adds its own BOS)")
    stats_tokens: int | None = hparam(None, f"covariance sample size in tokens (None: {STATS_TOKENS})")
    v_stop_nll: float = hparam(0.05, "a fact's target optimisation stops once its mean target NLL is below this")
    v_prefix_cache: bool = hparam(True, "run each prompt's tokens before the subject once, not at every "
                                        "target step (same vectors; False: whole prompts every step)")

    def target_problems(self) -> list[str]:
        """The shared fields' own checks."""
        problems = []
        for name in ("v_steps", "context_templates", "context_length"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, not {getattr(self, name)}")
        if self.v_stop_nll < 0:
            problems.append(f"v_stop_nll must be >= 0, not {self.v_stop_nll}")
        if self.stats_tokens is not None and self.stats_tokens <= 0:
            problems.append(f"stats_tokens must be > 0, not {self.stats_tokens}")
        return problems


#: What ``nas`` does (a method that changes its default says why after it).
NAS_HELP = ("rescale each solved value vector (the MLP output wanted at the top edited layer) to the original "
            "model's value norm, against norm growth in long histories")


@dataclass(frozen=True)
class NormAnchorHparams:
    """Norm-anchor scaling (NAS, arXiv 2602.02543) of the value vectors (MEMIT, AlphaEdit)."""

    nas: bool = hparam(False, NAS_HELP)
    nas_scale: float = hparam(3.7, "NAS anchor = this times the top layer's RMS original MLP output norm "
                                   "(SmolLM2: value vectors solved on the base model average 3.7x it, dev "
                                   "records 460-462; the paper anchors to that mean)")

    def anchor_problems(self) -> list[str]:
        return [] if self.nas_scale > 0 else [f"nas_scale must be > 0, not {self.nas_scale}"]


def layer_problems(name: str, layers: Any) -> list[str]:
    """``layer``/``layers`` must be block indices >= 0 (None: the model's default)."""
    if layers is None:
        return []
    values = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    if not values:
        return [f"{name} must name at least one layer"]
    bad = [v for v in values if not isinstance(v, int) or v < 0]
    return [f"{name} must be block indices >= 0, not {bad[0]!r}"] if bad else []


def depth_layer(model: torch.nn.Module, fraction: float) -> int:
    """The block at ``fraction`` of the model's depth (the model's family must be known)."""
    from kedit_vc.models.families import dimensions, family_of

    family_of(model)
    n_layers = dimensions(model).n_layers
    return min(n_layers - 1, max(0, round(n_layers * fraction)))


def depth_layers(model: torch.nn.Module, fractions: tuple[float, float]) -> tuple[int, ...]:
    """The blocks from ``fractions[0]`` to ``fractions[1]`` of the depth, both included."""
    low, high = (depth_layer(model, f) for f in fractions)
    return tuple(range(low, max(low, high) + 1))


def stats_tokens_default(hparams: Any) -> dict[str, Any]:
    """``{"stats_tokens": STATS_TOKENS}`` when the hyperparameters leave it open."""
    return {"stats_tokens": STATS_TOKENS} if getattr(hparams, "stats_tokens", 0) is None else {}


def with_model_defaults(model: torch.nn.Module, hparams: Any, **defaults: Callable[[], Any]) -> Any:
    """``hparams`` with each ``None`` field named in ``defaults`` set to ``defaults[name]()``
    and an open ``stats_tokens`` set to ``STATS_TOKENS``; refuses a model of unknown family."""
    from dataclasses import replace

    from kedit_vc.models.families import family_of

    family_of(model)
    updates = stats_tokens_default(hparams)
    updates.update({name: make() for name, make in defaults.items() if getattr(hparams, name) is None})
    return replace(hparams, **updates) if updates else hparams

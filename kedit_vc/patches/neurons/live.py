"""The live neurons at an MLP and the hook that adds their output.

Per token, with the MLP's input ``x`` [..., d]: ``out + a(x) V`` for the live neurons'
values ``V`` [N, d], where ``a(x) = relu(x Kᵀ + b)`` for T-Patcher's neurons and
``act(x Kᵀ + b) * (x Uᵀ)`` for gated slots (CaliNet), keys ``K`` [N, d], biases ``b`` [N],
ups ``U`` [N, d]. Patches are grouped by module and form, so one hook serves all the live
neurons of one form at one MLP. Where no ReLU neuron fires the output is returned
untouched (the very same tensor), so unrelated inputs are bit-for-bit the base model's.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple, Sequence

import torch
import torch.nn.functional as F

from kedit_vc.models.hooks import output_tensor, replace_output_tensor

from .core import NeuronPatch

ACTIVATION_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu, "silu": F.silu, "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


class LiveNeurons(NamedTuple):
    """The live neurons of one form at one module: keys [N, d], biases [N], values [N, d],
    ups [N, d] when gated."""

    keys: torch.Tensor
    biases: torch.Tensor
    values: torch.Tensor
    activation: str = "relu"
    ups: torch.Tensor | None = None


def live_groups(patches: Iterable[NeuronPatch]) -> dict[tuple[str, str, bool], LiveNeurons]:
    """(module, activation, gated) -> the live neurons of that form there, oldest first."""
    grouped: dict[tuple[str, str, bool], list[NeuronPatch]] = {}
    for patch in patches:
        grouped.setdefault((patch.module, patch.activation, patch.gated), []).append(patch)
    out = {}
    for (module, activation, gated), group in grouped.items():
        ups = torch.cat([p.ups for p in group if p.ups is not None]) if gated else None
        out[(module, activation, gated)] = LiveNeurons(
            torch.cat([p.keys for p in group]), torch.cat([p.biases for p in group]),
            torch.cat([p.values for p in group]), activation, ups)
    return out


def neuron_activations(inputs: torch.Tensor, keys: torch.Tensor, biases: torch.Tensor,
                       activation: str = "relu", ups: torch.Tensor | None = None) -> torch.Tensor:
    """``act(x Kᵀ + b)``, times ``x Uᵀ`` when gated: [..., N] for inputs [..., d] (float32)."""
    x = inputs.float()
    acts = ACTIVATION_FUNCTIONS[activation](x @ keys.T.to(x.device) + biases.to(x.device))
    return acts * (x @ ups.T.to(x.device)) if ups is not None else acts


def neuron_output(inputs: torch.Tensor, output: torch.Tensor, keys: torch.Tensor, biases: torch.Tensor,
                  values: torch.Tensor, activation: str = "relu", ups: torch.Tensor | None = None) -> torch.Tensor:
    """``output`` [..., d] plus the neurons' contribution; the same tensor when none fires."""
    acts = neuron_activations(inputs, keys, biases, activation, ups)
    if not bool((acts != 0).any()):
        return output
    return output + (acts @ values.to(acts.device)).to(output.dtype)


def attach(model: torch.nn.Module, patches: Sequence[NeuronPatch]) -> list[Any]:
    """Forward hooks adding the live neurons of ``patches`` to their MLPs; returns the handles."""
    for patch in patches:
        patch.check_model(model)
    handles = []
    for (name, _, _), live in live_groups(patches).items():
        module = model.get_submodule(name)

        def hook(_module: torch.nn.Module, args: tuple, output: Any, _live: LiveNeurons = live) -> Any:
            return replace_output_tensor(output, neuron_output(args[0], output_tensor(output), _live.keys,
                                                               _live.biases, _live.values, _live.activation,
                                                               _live.ups))

        handles.append(module.register_forward_hook(hook))
    return handles

"""The live neurons at an MLP and the hook that adds their output.

Per token, with the MLP's input ``x`` [..., d]: ``out + relu(x Kᵀ + b) V`` for the live
neurons' keys ``K`` [N, d], biases ``b`` [N] and values ``V`` [N, d]. Where no neuron
fires the output is returned untouched (the very same tensor), so unrelated inputs are
bit-for-bit the base model's.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from kedit_vc.models.hooks import output_tensor, replace_output_tensor

from .core import NeuronPatch


def live_neurons(patches: Iterable[NeuronPatch]) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """module -> (keys [N, d], biases [N], values [N, d]) of the live patches, oldest first."""
    grouped: dict[str, list[NeuronPatch]] = {}
    for patch in patches:
        grouped.setdefault(patch.module, []).append(patch)
    return {module: (torch.cat([p.keys for p in group]), torch.cat([p.biases for p in group]),
                     torch.cat([p.values for p in group])) for module, group in grouped.items()}


def neuron_activations(inputs: torch.Tensor, keys: torch.Tensor, biases: torch.Tensor) -> torch.Tensor:
    """relu(x Kᵀ + b): [..., N] for inputs [..., d] (float32)."""
    return torch.relu(inputs.float() @ keys.T.to(inputs.device) + biases.to(inputs.device))


def neuron_output(inputs: torch.Tensor, output: torch.Tensor, keys: torch.Tensor, biases: torch.Tensor,
                  values: torch.Tensor) -> torch.Tensor:
    """``output`` [..., d] plus the neurons' contribution; the same tensor when none fires."""
    acts = neuron_activations(inputs, keys, biases)
    if not bool((acts > 0).any()):
        return output
    return output + (acts @ values.to(acts.device)).to(output.dtype)


def attach(model: torch.nn.Module, patches: Sequence[NeuronPatch]) -> list[Any]:
    """Forward hooks adding the live neurons of ``patches`` to their MLPs; returns the handles."""
    for patch in patches:
        patch.check_model(model)
    handles = []
    for name, (keys, biases, values) in live_neurons(patches).items():
        module = model.get_submodule(name)

        def hook(_module: torch.nn.Module, args: tuple, output: Any, _k: torch.Tensor = keys,
                 _b: torch.Tensor = biases, _v: torch.Tensor = values) -> Any:
            return replace_output_tensor(output, neuron_output(args[0], output_tensor(output), _k, _b, _v))

        handles.append(module.register_forward_hook(hook))
    return handles

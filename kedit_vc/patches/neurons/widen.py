"""Neurons as the MLP's own neurons: a widened state dict a plain HF folder can hold.

A gated slot (CaliNet) adds ``act(x·k) * (x·u) · v`` to a gated MLP's output
``down(act(gate x) * (up x))``. When ``act`` is the MLP's own activation and the slot's bias
is zero, the slot *is* one more intermediate neuron of that MLP: gate row ``k``, up row
``u``, down column ``v``. The config has one ``intermediate_size`` for every layer, so every
MLP is widened by the same ``n`` (the most neurons any one MLP holds); the others get zero
rows and columns, and ``act(0) * 0 = 0`` for silu, gelu and relu, so those contribute exactly
zero. The widened model's logits equal ``load_edited``'s up to float rounding (the sum over
the intermediate dimension is one matmul instead of two).

T-Patcher's neurons ``relu(x·k + b) · v`` have a bias and are ungated: a bias-free gated MLP
(Llama, Qwen, Gemma) has no neuron of that form, so they are refused, not approximated.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from .core import NeuronPatch

#: HF activation names -> the ``neurons`` kind's names.
ACTIVATION_NAMES = {"silu": "silu", "swish": "silu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh",
                    "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh", "relu": "relu"}
#: A gated MLP's three projections (Llama, Qwen, Gemma).
GATE, UP, DOWN = "gate_proj", "up_proj", "down_proj"


def hf_activation(config: Any) -> Any:
    """The MLP activation as the HF config names it (Gemma, Llama and GPT-2 use different keys)."""
    return (getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", None)
            or getattr(config, "activation_function", None))


def mlp_activation(config: Any) -> str | None:
    """The ``neurons`` name of the model's MLP activation (None when not one we know)."""
    raw = hf_activation(config)
    return ACTIVATION_NAMES.get(str(raw)) if raw is not None else None


def gated_mlps(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The module paths ``p`` with ``p.gate_proj``/``p.up_proj``/``p.down_proj`` weights, in order."""
    suffix = f".{GATE}.weight"
    return [name.removesuffix(suffix) for name in state if name.endswith(suffix)
            and f"{name.removesuffix(suffix)}.{UP}.weight" in state
            and f"{name.removesuffix(suffix)}.{DOWN}.weight" in state]


def refusal(patches: Sequence[NeuronPatch], config: Any, state: Mapping[str, torch.Tensor]) -> str | None:
    """Why these neurons cannot become MLP neurons of this model (None when they can)."""
    mlps = set(gated_mlps(state))
    if not mlps:
        return "this model's MLPs are not gated (gate/up/down projections), so added neurons have no slot there"
    if isinstance(getattr(config, "intermediate_size", None), (list, tuple)):
        return "this model's config gives each layer its own intermediate_size, which widening does not handle"
    activation = mlp_activation(config)
    for patch in patches:
        method = patch.meta.get("method", "tpatcher" if not patch.extended else "neurons")
        if not patch.gated or patch.activation != activation:
            return (f"{method}'s neurons at {patch.module} are {patch.activation}"
                    f"{' gated' if patch.gated else ', ungated'}, while this model's MLP neurons are "
                    f"{activation} gated: no MLP neuron has their form")
        if bool(patch.biases.any()):
            return f"{method}'s neurons at {patch.module} have a bias, which this model's bias-free MLP cannot hold"
        if patch.module not in mlps:
            return f"{patch.module} is not one of this model's gated MLPs"
    return None


def widened(state: Mapping[str, torch.Tensor], patches: Sequence[NeuronPatch]) -> tuple[dict[str, torch.Tensor], int]:
    """(state dict with every gated MLP ``n`` neurons wider, ``n``); call ``refusal`` first.

    Per MLP: gate and up weights [i, d] -> [i + n, d] (rows ``keys`` and ``ups``, then
    zeros); down weight [d, i] -> [d, i + n] (columns ``valuesᵀ``, then zeros). Neurons keep
    the live order (oldest first), as ``live_groups`` sums them."""
    rows: dict[str, list[NeuronPatch]] = {}
    for patch in patches:
        rows.setdefault(patch.module, []).append(patch)
    n = max((sum(len(p.ids) for p in group) for group in rows.values()), default=0)
    out = dict(state)
    for mlp in gated_mlps(state):
        gate, up, down = (state[f"{mlp}.{name}.weight"] for name in (GATE, UP, DOWN))
        group = rows.get(mlp, [])
        width = gate.shape[1]
        keys = torch.zeros(n, width)
        ups = torch.zeros(n, width)
        values = torch.zeros(n, down.shape[0])
        if group:
            used = sum(len(p.ids) for p in group)
            keys[:used] = torch.cat([p.keys for p in group])
            ups[:used] = torch.cat([p.ups for p in group if p.ups is not None])
            values[:used] = torch.cat([p.values for p in group])
        out[f"{mlp}.{GATE}.weight"] = torch.cat([gate, keys.to(gate.dtype)])
        out[f"{mlp}.{UP}.weight"] = torch.cat([up, ups.to(up.dtype)])
        out[f"{mlp}.{DOWN}.weight"] = torch.cat([down, values.T.to(down.dtype)], dim=1)
        for name in (GATE, UP):  # an MLP with biases (mlp_bias): the new neurons' are zero
            bias = state.get(f"{mlp}.{name}.bias")
            if bias is not None:
                out[f"{mlp}.{name}.bias"] = torch.cat([bias, bias.new_zeros(n)])
    return out, n

"""``NeuronPatch``: the neurons one commit adds beside one MLP, as plain data.

T-Patcher (Huang et al. 2023, arXiv 2301.09785) corrects a mistake by adding one neuron to
the last block's FFN: for the MLP's input ``x`` [d_model] at every token, the neuron's
activation is ``a = relu(x · k + b)`` and the MLP's output gains ``a · v``. A patch holds
the neurons of one commit: ``keys`` [n, d_model], ``biases`` [n], ``values`` [n, d_model]
(float32), with an id per neuron. Neurons are independent and purely additive, so the live
set at a revision is the live patches' neurons and a revert is exact: a reverted commit's
neurons are simply not attached. ReLU (not the FFN's own activation) makes a neuron that
is not firing contribute exactly zero, so an unrelated input's output is bit-for-bit the
base model's.

Export: ``kvc export --format hf`` refuses a revision with live T-Patcher neurons: a gated,
bias-free MLP (Llama, Qwen, Gemma: ``down(act(gate·x) * up·x)``) has no neuron of the form
``relu(x·k + b)``, so a widened folder would not give ``load_edited``'s logits;
``kedit_vc.load_edited`` is the way to use such a revision. CaliNet's gated slots are the
MLP's own neurons and are exported by widening every MLP (``widen``).

CaliNet (Dong et al. 2022, arXiv 2210.03329) adds calibration slots that are neurons of
the FFN's own form: ``activation`` names the function (``relu``, ``silu``, ``gelu``,
``gelu_tanh``) and a ``gated`` patch also holds ``ups`` [n, d_model], so a slot's activation
is ``act(x · k + b) * (x · u)`` (the gate/up pair of a Llama-style MLP; CaliNet keeps ``b``
at zero). Such a slot is exactly one more intermediate neuron of that MLP (gate row ``k``, up
row ``u``, down column ``v``); it is not silent off its facts (silu and gelu are never
exactly zero), so unrelated outputs move a little, as in the paper.

File: safetensors (``keys``, ``biases``, ``values``, and ``ups`` when gated) whose metadata
holds ``format`` = ``kvc-neurons``, ``format_version`` (1: T-Patcher's ReLU neurons, whose
info and bytes are unchanged; 2: any other activation or gated), ``content_hash`` and
``info`` (JSON: module, width, ids, meta, and ``activation``/``gated`` in version 2); the
content hash covers both, so a changed bit is refused on load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import torch

from kedit_vc.patches import envelope
from kedit_vc.patches.registry import PatchError

FORMAT = "kvc-neurons"
FORMAT_VERSION = "1"
FORMAT_VERSION_ACTIVATIONS = "2"
HASH_FORMAT = b"kvc-neurons-hash/1\0"
TENSORS = ("keys", "biases", "values")
TENSORS_GATED = ("keys", "biases", "ups", "values")
ACTIVATIONS = ("relu", "silu", "gelu", "gelu_tanh")


def _file_version(data: bytes) -> str | None:
    """The ``format_version`` in a safetensors file's metadata (None when unreadable)."""
    try:
        size = int.from_bytes(data[:8], "little")
        return (json.loads(data[8:8 + size].decode("utf-8")).get("__metadata__") or {}).get("format_version")
    except Exception:  # noqa: BLE001 - decode() words the error
        return None


@dataclass(frozen=True, eq=False)
class NeuronPatch:
    """Neurons added at the MLP ``module`` (its input and output are ``width`` wide).

    ``activation``/``gated``: T-Patcher's ``relu``, ungated (the default), or the FFN's own
    form for CaliNet's slots, with ``ups`` [n, width] when ``gated``."""

    module: str
    width: int
    ids: tuple[str, ...]
    keys: torch.Tensor     # [n, width] float32
    biases: torch.Tensor   # [n] float32
    values: torch.Tensor   # [n, width] float32
    meta: Mapping[str, str] = field(default_factory=dict)
    activation: str = "relu"
    gated: bool = False
    ups: torch.Tensor | None = None   # [n, width] float32 when gated

    kind = "neurons"

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.activation not in ACTIVATIONS:
            raise PatchError(f"neurons activation must be one of {', '.join(ACTIVATIONS)}, not {self.activation!r}")
        if self.gated != (self.ups is not None):
            raise PatchError("gated neurons need ups [n, width], and only they have them")
        shapes = {"keys": (self.keys, (n, self.width)), "biases": (self.biases, (n,)),
                  "values": (self.values, (n, self.width))}
        if self.ups is not None:
            shapes["ups"] = (self.ups, (n, self.width))
        for name, (tensor, shape) in shapes.items():
            if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
                got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
                raise PatchError(f"neurons {name} must have shape {shape}, got {got}")
            if not bool(torch.isfinite(tensor).all()):
                raise PatchError(f"neurons {name} hold a non-finite value")
            object.__setattr__(self, name, tensor.detach().to("cpu", torch.float32).contiguous())
        if len(set(self.ids)) != n:
            raise PatchError("neuron ids must be distinct")
        object.__setattr__(self, "ids", tuple(str(i) for i in self.ids))
        object.__setattr__(self, "meta", MappingProxyType(dict(sorted(self.meta.items()))))

    def __repr__(self) -> str:
        form = f", {self.activation}{' gated' if self.gated else ''}" if self.extended else ""
        return f"NeuronPatch({self.module}, +{len(self.ids)} neurons, width {self.width}{form})"

    @property
    def extended(self) -> bool:
        """Whether this patch needs format version 2 (not T-Patcher's ungated ReLU)."""
        return self.activation != "relu" or self.gated

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"module": self.module, "width": self.width, "ids": list(self.ids),
                                "meta": dict(self.meta)}
        if self.extended:  # version 1 info (and so its hash) is unchanged
            info.update(activation=self.activation, gated=self.gated)
        return info

    def tensors(self) -> dict[str, torch.Tensor]:
        if self.ups is not None:
            return {"keys": self.keys, "biases": self.biases, "ups": self.ups, "values": self.values}
        return {"keys": self.keys, "biases": self.biases, "values": self.values}

    def content_hash(self) -> str:
        """sha256 of the canonical JSON info, then each tensor's name, shape and bytes."""
        return envelope.tensors_hash(HASH_FORMAT, self.info(), self.tensors())

    def to_bytes(self) -> bytes:
        version = FORMAT_VERSION_ACTIVATIONS if self.extended else FORMAT_VERSION
        return envelope.encode(FORMAT, version, self.info(), self.tensors(), self.content_hash())

    @classmethod
    def from_bytes(cls, data: bytes, expected_hash: str | None = None, source: str = "neurons") -> "NeuronPatch":
        """Parse and verify a neurons file; ``PatchError`` when malformed, altered or unexpected."""
        try:
            if _file_version(data) == FORMAT_VERSION_ACTIVATIONS:
                try:
                    info, tensors, recorded = envelope.decode(data, FORMAT, FORMAT_VERSION_ACTIVATIONS, TENSORS_GATED)
                except ValueError:
                    info, tensors, recorded = envelope.decode(data, FORMAT, FORMAT_VERSION_ACTIVATIONS, TENSORS)
                activation, gated = str(info["activation"]), bool(info["gated"])
            else:
                info, tensors, recorded = envelope.decode(data, FORMAT, FORMAT_VERSION, TENSORS)
                activation, gated = "relu", False
            patch = cls(module=str(info["module"]), width=int(info["width"]), ids=tuple(info["ids"]),
                        meta=dict(info["meta"]), keys=tensors["keys"], biases=tensors["biases"],
                        values=tensors["values"], activation=activation, gated=gated, ups=tensors.get("ups"))
        except PatchError as error:
            raise PatchError(f"{source} is not a valid kvc neurons patch: {error}") from None
        except Exception as error:  # noqa: BLE001 - safetensors, json and validation errors alike
            raise PatchError(f"{source} is not a valid kvc neurons file: {error}") from None
        envelope.check_hash(patch.content_hash(), recorded, expected_hash, source, "neurons patch")
        return patch

    def check_model(self, model: torch.nn.Module) -> None:
        """Refuse a model without ``module`` or whose hidden width is not the patch's."""
        try:
            model.get_submodule(self.module)
        except AttributeError:
            raise PatchError(f"this model has no module {self.module!r}; was the patch made for another "
                             "model?") from None
        width = int(getattr(model.config, "hidden_size", getattr(model.config, "n_embd", -1)))
        if width != self.width:
            raise PatchError(f"neurons at {self.module} read width {self.width}, but this model's hidden size is "
                             f"{width}; was the patch made for another model?")

    def describe(self) -> dict[str, Any]:
        """What ``kvc show`` / ``kvc diff`` print: where, how many, their value norms."""
        out = {"kind": self.kind, "module": self.module, "neurons_added": len(self.ids),
               "value_norms": [round(float(x), 4) for x in self.values.norm(dim=-1)], "width": self.width}
        if self.extended:
            out.update(activation=self.activation, gated=self.gated, method=self.meta.get("method", ""))
        return out

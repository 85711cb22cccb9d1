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

Export: ``kvc export --format hf`` refuses a revision with live neurons (as it refuses any
non-weight patch) rather than widening the FFN. Widening is what the config allows only in
part: it has one ``intermediate_size`` for all layers, so every other layer would need
zero-contribution neurons, which is possible; but the neuron itself is not an FFN neuron of
a gated, bias-free MLP (Llama, Qwen, Gemma: ``down(silu(gate·x) * up·x)``): ``relu(x·k + b)``
has a bias and a ReLU the architecture cannot express, so a widened folder would not give
``load_edited``'s logits. ``kedit_vc.load_edited`` is the way to use such a revision.

File: safetensors (``keys``, ``biases``, ``values``) whose metadata holds ``format`` =
``kvc-neurons``, ``format_version``, ``content_hash`` and ``info`` (JSON: module, width,
ids, meta); the content hash covers both, so a changed bit is refused on load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import torch

from kedit_vc.patches import envelope
from kedit_vc.patches.registry import PatchError

FORMAT = "kvc-neurons"
FORMAT_VERSION = "1"
HASH_FORMAT = b"kvc-neurons-hash/1\0"
TENSORS = ("keys", "biases", "values")


@dataclass(frozen=True, eq=False)
class NeuronPatch:
    """Neurons added at the MLP ``module`` (its input and output are ``width`` wide)."""

    module: str
    width: int
    ids: tuple[str, ...]
    keys: torch.Tensor     # [n, width] float32
    biases: torch.Tensor   # [n] float32
    values: torch.Tensor   # [n, width] float32
    meta: Mapping[str, str] = field(default_factory=dict)

    kind = "neurons"

    def __post_init__(self) -> None:
        n = len(self.ids)
        shapes = {"keys": (self.keys, (n, self.width)), "biases": (self.biases, (n,)),
                  "values": (self.values, (n, self.width))}
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
        return f"NeuronPatch({self.module}, +{len(self.ids)} neurons, width {self.width})"

    def info(self) -> dict[str, Any]:
        return {"module": self.module, "width": self.width, "ids": list(self.ids), "meta": dict(self.meta)}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"keys": self.keys, "biases": self.biases, "values": self.values}

    def content_hash(self) -> str:
        """sha256 of the canonical JSON info, then each tensor's name, shape and bytes."""
        return envelope.tensors_hash(HASH_FORMAT, self.info(), self.tensors())

    def to_bytes(self) -> bytes:
        return envelope.encode(FORMAT, FORMAT_VERSION, self.info(), self.tensors(), self.content_hash())

    @classmethod
    def from_bytes(cls, data: bytes, expected_hash: str | None = None, source: str = "neurons") -> "NeuronPatch":
        """Parse and verify a neurons file; ``PatchError`` when malformed, altered or unexpected."""
        try:
            info, tensors, recorded = envelope.decode(data, FORMAT, FORMAT_VERSION, TENSORS)
            patch = cls(module=str(info["module"]), width=int(info["width"]), ids=tuple(info["ids"]),
                        meta=dict(info["meta"]), **{name: tensors[name] for name in TENSORS})
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
        return {"kind": self.kind, "module": self.module, "neurons_added": len(self.ids),
                "value_norms": [round(float(x), 4) for x in self.values.norm(dim=-1)], "width": self.width}

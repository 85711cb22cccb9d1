"""Where a loaded model lives: device, dtype and (for models larger than one device) a device map.

The same three settings reach every model-loading command (``--device``/``--dtype``/
``--device-map``), the Python API (``kedit_vc.load_edited(device=..., dtype=...)``) and the
environment (``KVC_DEVICE``, ``KVC_DTYPE``, ``KVC_DEVICE_MAP``). They are a property of the
machine, not of the history, so they are not recorded in the store: a store made on a GPU
opens on a laptop. Precedence: an explicit argument or flag, then the environment, then
the defaults (``auto`` device: cuda when available, else cpu; float32 on cpu, float32 on
cuda too unless asked: edits are solved in float64 and stored in the base weights' dtype).
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Iterator

from kedit_vc.errors import UsageError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"
DTYPES = ("float32", "bfloat16", "float16")
DEVICE_MAPS = ("auto", "balanced", "sequential")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def parse_device(text: str | None, flag: str = "--device") -> str | None:
    """``text`` checked against ``auto|cpu|cuda|cuda:N|mps`` (None: not set)."""
    if text is None or text == "":
        return None
    value = text.strip().lower()
    if not _DEVICE_PATTERN.match(value):
        raise UsageError(f"{flag}: unknown device {text!r} (expected one of {DEVICE_CHOICES})")
    return value


def parse_dtype(text: str | None, flag: str = "--dtype") -> str | None:
    """``text`` checked against float32|bfloat16|float16 (``fp32``/``bf16``/``fp16`` accepted)."""
    if text is None or text == "":
        return None
    value = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}.get(
        text.strip().lower(), text.strip().lower())
    if value not in DTYPES:
        raise UsageError(f"{flag}: unknown dtype {text!r} (expected one of {', '.join(DTYPES)})")
    return value


def parse_device_map(text: str | None, flag: str = "--device-map") -> str | None:
    if text is None or text == "" or text.lower() == "none":
        return None
    if text.lower() not in DEVICE_MAPS:
        raise UsageError(f"{flag}: unknown device map {text!r} (expected one of {', '.join(DEVICE_MAPS)}, none)")
    return text.lower()


@dataclass(frozen=True)
class Placement:
    """Requested placement; ``None`` fields fall back to the environment, then the defaults."""

    device: str | None = None
    dtype: str | None = None
    device_map: str | None = None
    # accelerate's ``max_memory`` for a device map, e.g. {"cpu": "200MB"}; tests use it to force a split.
    max_memory: dict[Any, Any] | None = None

    def merged(self, other: "Placement") -> "Placement":
        """``self`` with its unset fields taken from ``other``."""
        return Placement(self.device or other.device, self.dtype or other.dtype,
                         self.device_map or other.device_map, self.max_memory or other.max_memory)


def from_environment() -> Placement:
    return Placement(parse_device(os.environ.get("KVC_DEVICE"), "KVC_DEVICE"),
                     parse_dtype(os.environ.get("KVC_DTYPE"), "KVC_DTYPE"),
                     parse_device_map(os.environ.get("KVC_DEVICE_MAP"), "KVC_DEVICE_MAP"))


_CURRENT: ContextVar[Placement] = ContextVar("kvc_placement", default=Placement())  # noqa: B039 - frozen, never mutated


def set_default(placement: Placement) -> None:
    """Make ``placement`` the default of later loads in this context (what the CLI flags do)."""
    _CURRENT.set(placement.merged(_CURRENT.get()))


@contextmanager
def using(placement: Placement) -> Iterator[None]:
    token = _CURRENT.set(placement.merged(_CURRENT.get()))
    try:
        yield
    finally:
        _CURRENT.reset(token)


@contextmanager
def isolated() -> Iterator[None]:
    """No flag-set default inside (one CLI invocation's flags never reach the next one in-process)."""
    token = _CURRENT.set(Placement())
    try:
        yield
    finally:
        _CURRENT.reset(token)


def requested(explicit: Placement | None = None) -> Placement:
    """The placement a load uses: ``explicit``, then the CLI/context default, then the environment."""
    return (explicit or Placement()).merged(_CURRENT.get()).merged(from_environment())


def resolve_device(device: str | None) -> str:
    """``auto``/None -> ``cuda`` when available else ``cpu``; a named device must exist."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: no CUDA device is available on this machine (use --device cpu)")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: no Apple MPS device is available on this machine (use --device cpu)")
    return device


def torch_dtype(name: str | None) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name or "float32"]


def place(model: Any, placement: Placement) -> Any:
    """Move a float32 CPU model to ``placement``: cast, then ``.to(device)`` or an accelerate device map.

    A device map spreads the layers over the GPUs (and CPU) by free memory; editing hooks and
    deltas then run on whichever device holds the edited layer (editors read the weight's device).
    """
    dtype = torch_dtype(placement.dtype)
    if dtype is not torch_dtype("float32"):
        model.to(dtype)
    if placement.device_map is None:
        device = resolve_device(placement.device)
        if device == "cpu":
            return model
        model.to(device)
        _align_inputs(model, device)
        return model
    from accelerate import dispatch_model, infer_auto_device_map

    no_split = list(getattr(model, "_no_split_modules", None) or [])
    kwargs: dict[str, Any] = {"no_split_module_classes": no_split, "dtype": dtype}
    if placement.max_memory is not None:
        kwargs["max_memory"] = placement.max_memory
    elif placement.device_map != "sequential":  # auto = balanced over the GPUs, as in transformers
        from accelerate.utils import get_balanced_memory

        kwargs["max_memory"] = get_balanced_memory(model, no_split_module_classes=no_split, dtype=dtype)
    device_map = infer_auto_device_map(model, **kwargs)
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()
    return dispatch_model(model, device_map=device_map)


def _align_inputs(model: Any, device: str) -> None:
    """Move the input tensors of the model (and of its base, which statistics call directly) to
    ``device``, so callers that build token ids on the CPU keep working; outputs stay on ``device``."""
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module

    from .families import decoder_stack

    add_hook_to_module(model, AlignDevicesHook(execution_device=device))
    try:
        base = decoder_stack(model)
    except Exception:  # noqa: BLE001 - an unknown layout: the top-level hook still applies
        return
    if base is not model:
        add_hook_to_module(base, AlignDevicesHook(execution_device=device))


def describe(model: Any) -> str:
    """``cuda:0 bfloat16`` or ``cpu,cuda:0 float32 (device map)``: for logs and ``model info``."""
    devices = sorted({str(p.device) for p in model.parameters()})
    dtypes = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()})
    mapped = " (device map)" if getattr(model, "hf_device_map", None) else ""
    return f"{','.join(devices)} {','.join(dtypes)}{mapped}"


__all__ = ["Placement", "parse_device", "parse_dtype", "parse_device_map", "set_default", "using",
           "requested", "resolve_device", "torch_dtype", "place", "describe"]

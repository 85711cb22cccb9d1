"""Reach inside a model by module path: read a module's input, or edit its output.

Small context managers over torch forward hooks, so editors, evaluation and tracing
share one mechanism (the idea of ROME's ``nethook``). Hooks are always removed on exit.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch


def output_tensor(output: Any) -> torch.Tensor:
    """The hidden-state tensor of a module output (blocks may return tuples)."""
    return output[0] if isinstance(output, tuple) else output


def replace_output_tensor(output: Any, tensor: torch.Tensor) -> Any:
    return (tensor,) + tuple(output[1:]) if isinstance(output, tuple) else tensor


@contextmanager
def record_inputs(modules: dict[str, torch.nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the first positional input of each module on the next forward: name -> [b, t, d]."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in modules.items():
        def hook(_module: torch.nn.Module, args: tuple, _name: str = name) -> None:
            seen[_name] = args[0]
        handles.append(module.register_forward_pre_hook(hook))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def record_outputs(modules: dict[str, torch.nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Record each module's output hidden state on the next forward: name -> [b, t, d]."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in modules.items():
        def hook(_module: torch.nn.Module, _args: tuple, output: Any, _name: str = name) -> None:
            seen[_name] = output_tensor(output)
        handles.append(module.register_forward_hook(hook))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def edit_output(module: torch.nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace the module's output hidden state ``h`` [b, t, d] by ``fn(h)`` while inside."""
    def hook(_module: torch.nn.Module, _args: tuple, output: Any) -> Any:
        return replace_output_tensor(output, fn(output_tensor(output)))
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()

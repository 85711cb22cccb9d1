"""The live codebook of a module and the lookup that replaces its output.

Across commits (oldest first): each live patch first applies its changes to earlier entries
(an entry's radius and value become the ones of the latest live patch that changed it; a
change to an entry whose own commit is not live is ignored), then adds its own entries. So
the codebook at a revision depends only on which patches are live, in commit order.

Lookup (per token, ``codebook_output``): the module's input ``h`` [..., d_in] is compared
with every key in float32 Euclidean distance; where the nearest key's distance is at most
its radius, the output is that key's value, elsewhere the module's own output, untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from .core import CodebookPatch


@dataclass(frozen=True)
class LiveCodebook:
    """The entries in effect at one module: ``keys`` [N, d_in], ``values`` [N, d_out],
    ``radii`` [N], with ``ids`` and ``labels`` in the order they were added."""

    module: str
    ids: tuple[str, ...]
    keys: torch.Tensor
    values: torch.Tensor
    radii: torch.Tensor
    labels: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.ids)


def live_entries(patches: Iterable[CodebookPatch], module: str | None = None) -> dict[str, LiveCodebook]:
    """module -> its live codebook, from the live patches oldest first (``module``: only that one)."""
    per_module: dict[str, dict[str, list[Any]]] = {}
    dims: dict[str, tuple[int, int]] = {}
    for patch in patches:
        if module is not None and patch.module != module:
            continue
        entries = per_module.setdefault(patch.module, {})
        dims.setdefault(patch.module, (patch.key_dim, patch.value_dim))
        assert patch.adjusted_values is not None
        for i, entry in enumerate(patch.adjusted_ids):
            if entry in entries:
                entries[entry][1] = patch.adjusted_values[i]
                entries[entry][2] = patch.adjusted_radii[i]
        for i, entry in enumerate(patch.ids):
            entries[entry] = [patch.keys[i], patch.values[i], patch.radii[i], patch.labels[i]]
    out = {}
    for name, entries in per_module.items():
        d_in, d_out = dims[name]
        rows = list(entries.values())
        out[name] = LiveCodebook(
            name, tuple(entries),
            torch.stack([r[0] for r in rows]) if rows else torch.zeros(0, d_in),
            torch.stack([r[1] for r in rows]) if rows else torch.zeros(0, d_out),
            torch.stack([r[2] for r in rows]) if rows else torch.zeros(0),
            tuple(r[3] for r in rows))
    return out


def nearest(queries: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance [M], index [M]) of the nearest key [N, d] to each query [M, d], in float32."""
    dist = torch.cdist(queries.float(), keys.float(), compute_mode="donot_use_mm_for_euclid_dist")
    return dist.min(dim=1)


def codebook_output(inputs: torch.Tensor, output: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                    radii: torch.Tensor) -> torch.Tensor:
    """The module's ``output`` [..., d_out] with the value of the nearest key put at each token
    whose input [..., d_in] lies within that key's radius; the very same tensor when none does."""
    if keys.shape[0] == 0:
        return output
    flat_in = inputs.reshape(-1, inputs.shape[-1])
    dist, index = nearest(flat_in, keys.to(flat_in.device))
    hit = dist <= radii.to(dist.device)[index]
    if not bool(hit.any()):
        return output
    flat_out = output.reshape(-1, output.shape[-1])
    chosen = values.to(flat_out.device)[index].to(flat_out.dtype)
    return torch.where(hit[:, None], chosen, flat_out).reshape(output.shape)


def attach(model: torch.nn.Module, patches: Sequence[CodebookPatch]) -> list[Any]:
    """Forward hooks putting the live codebook of ``patches`` (oldest first) on their modules;
    returns the hook handles (``handle.remove()`` detaches). Each patch is checked first."""
    for patch in patches:
        patch.check_model(model)
    handles = []
    for name, book in live_entries(patches).items():
        module = model.get_submodule(name)
        weight = getattr(module, "weight", None)
        device = weight.device if isinstance(weight, torch.Tensor) else torch.device("cpu")
        keys, values, radii = (t.to(device) for t in (book.keys, book.values, book.radii))  # moved once

        def hook(_module: torch.nn.Module, args: tuple, output: Any,
                 _k: torch.Tensor = keys, _v: torch.Tensor = values, _r: torch.Tensor = radii) -> Any:
            return codebook_output(args[0], output, _k, _v, _r)

        handle = module.register_forward_hook(hook)
        handles.append(handle)
    return handles

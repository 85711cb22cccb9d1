"""What the learned editors (MEND, KE) share: gradient factors, low-rank hooks, editor files.

A learned editor turns the fine-tuning gradient of an edit at a few linear layers into a
weight update with a network trained beforehand (``kedit_vc.editors.common.metatrain``).
For a linear map ``y = W x`` (W [d_out, d_in]) the gradient of a token's loss is the
outer product ``δ uᵀ`` of the output gradient δ [d_out] and the input u [d_in]; so an
edit's gradient at a layer is held as two factor matrices, ``u`` [T, d_in] and ``δ``
[T, d_out] over its T tokens, and never formed densely. The networks return low-rank
factors too: ``ΔW = left @ rightᵀ`` (left [d_out, r], right [d_in, r]).

A trained editor is a folder: ``editor.safetensors`` (the network's tensors) and
``editor.json`` (method, base-model fingerprint, network settings, training record),
cached under ``<cache>/editors/<method>/<key>/`` where the key hashes the method, the
base fingerprint and the network settings. No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from kedit_vc.errors import KvcError
from kedit_vc.models.families import family_of, get_module, num_layers
from kedit_vc.models.prompting import pad_batch

EDITOR_TENSORS = "editor.safetensors"
EDITOR_JSON = "editor.json"
#: Edited layers when none are named: the last three blocks' MLP down-projections (MEND's choice).
DEFAULT_LAST_LAYERS = 3


class NoTrainedEditor(KvcError):
    """No trained editor exists for this base model and these settings."""


class EditorMismatch(KvcError):
    """A trained editor made for another base model or other settings."""


def edited_layers(model: torch.nn.Module, layers: Sequence[int] | None) -> tuple[int, ...]:
    """``layers`` or the last ``DEFAULT_LAST_LAYERS`` blocks, sorted."""
    if layers:
        return tuple(sorted(int(x) for x in layers))
    n = num_layers(model)
    return tuple(range(max(0, n - DEFAULT_LAST_LAYERS), n))


# ---------------------------------------------------------------------------------------
# Gradient factors of an edit


@dataclass(frozen=True)
class EditBatch:
    """Token sequences with the target tokens a loss reads.

    ``input_ids``/``mask`` [b, t] (right-padded); ``rows``, ``cols``, ``ids``, ``weights``
    [n]: per target token its sequence, position (the position that predicts it), id, and
    weight (1 / the target's length, so every fact counts once).
    """

    input_ids: torch.Tensor
    mask: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    ids: torch.Tensor
    weights: torch.Tensor


def make_batch(sequences: Sequence[tuple[Sequence[int], Sequence[int]]], pad: int) -> EditBatch:
    """A batch from (prompt ids, target ids) pairs: each sequence is prompt + target[:-1]."""
    seqs, rows, cols, ids, weights = [], [], [], [], []
    for row, (prompt, target) in enumerate(sequences):
        for j, token in enumerate(target):
            rows.append(row)
            cols.append(len(prompt) - 1 + j)
            ids.append(int(token))
            weights.append(1.0 / len(target))
        seqs.append(list(prompt) + list(target[:-1]))
    input_ids, mask = pad_batch(seqs, pad)
    return EditBatch(input_ids, mask, torch.tensor(rows), torch.tensor(cols), torch.tensor(ids),
                     torch.tensor(weights))


def token_nll(logits: torch.Tensor, batch: EditBatch) -> torch.Tensor:
    """Per target token NLL [n] from logits [n, vocab] at the batch's target positions."""
    return -F.log_softmax(logits.float(), -1).gather(-1, batch.ids[:, None])[:, 0]


def _mlp_out_modules(model: torch.nn.Module, layers: Sequence[int]) -> dict[int, torch.nn.Module]:
    family = family_of(model)
    return {layer: get_module(model, family.mlp_out_path(layer)) for layer in layers}


@dataclass(frozen=True)
class GradientFactors:
    """An edit's gradient at each edited layer, as factors: ``u[l]`` [T, d_in], ``delta[l]``
    [T, d_out] over the T tokens with a non-zero gradient (ΔW's gradient = Σ_t δ_t u_tᵀ)."""

    u: Mapping[int, torch.Tensor]
    delta: Mapping[int, torch.Tensor]

    def gradient(self, layer: int) -> torch.Tensor:
        """The dense gradient [d_out, d_in] (tests and KE's reference formula)."""
        return self.delta[layer].T @ self.u[layer]


def gradient_factors(model: torch.nn.Module, layers: Sequence[int], batch: EditBatch,
                     forward: Any = None) -> tuple[GradientFactors, float]:
    """The factors of the gradient of the batch's summed per-fact mean target NLL, and that loss.

    ``forward(model, batch) -> logits [n, vocab]`` (default: a full forward). The model's
    weights need not require grad: a zero leaf added to each layer's output carries δ.
    """
    from kedit_vc.models.forward import final_hidden, logits_from_hidden

    modules = _mlp_out_modules(model, layers)
    inputs: dict[int, torch.Tensor] = {}
    leaves: dict[int, torch.Tensor] = {}

    def hook(layer: int):  # noqa: ANN202
        def capture(_m: torch.nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            inputs[layer] = args[0].detach()
            leaves[layer] = torch.zeros_like(out, requires_grad=True)
            return out + leaves[layer]
        return capture

    handles = [modules[layer].register_forward_hook(hook(layer)) for layer in layers]
    try:
        with torch.enable_grad():
            if forward is None:
                hidden = final_hidden(model, batch.input_ids, batch.mask)
                logits = logits_from_hidden(model, hidden[batch.rows, batch.cols])
            else:
                logits = forward(model, batch)
            loss = (token_nll(logits, batch) * batch.weights).sum()
            grads = torch.autograd.grad(loss, [leaves[layer] for layer in layers])
    finally:
        for handle in handles:
            handle.remove()
    keep = batch.mask.bool()
    u: dict[int, torch.Tensor] = {}
    delta: dict[int, torch.Tensor] = {}
    for layer, grad in zip(layers, grads):
        x, d = inputs[layer][keep].float(), grad[keep].float()  # [T, d_in], [T, d_out]
        nonzero = (x != 0).any(-1) & (d != 0).any(-1)  # tokens after the last target carry no gradient
        u[layer], delta[layer] = x[nonzero], d[nonzero]
    return GradientFactors(u, delta), float(loss.detach())


@contextmanager
def lowrank_added(model: torch.nn.Module, factors: Mapping[int, tuple[torch.Tensor, torch.Tensor]]
                  ) -> Iterator[None]:
    """Run the model as if each edited layer's weight were ``W + left @ rightᵀ``, differentiably.

    ``factors``: layer -> (left [d_out, r], right [d_in, r]); the hook adds
    ``(x @ right) @ leftᵀ`` to the layer's output, never forming the dense update.
    """
    modules = _mlp_out_modules(model, list(factors))

    def hook(layer: int):  # noqa: ANN202
        left, right = factors[layer]

        def add(_m: torch.nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            return out + (args[0] @ right.to(out.dtype)) @ left.to(out.dtype).T
        return add

    handles = [modules[layer].register_forward_hook(hook(layer)) for layer in factors]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def factors_to_delta(model: torch.nn.Module, factors: Mapping[int, tuple[torch.Tensor, torch.Tensor]],
                     meta: Mapping[str, str]) -> Any:
    """The store's ``Delta`` of low-rank updates (layout-aware: a [d_in, d_out] weight gets the
    factors swapped)."""
    from kedit_vc.delta import Delta, LowRank
    from kedit_vc.models.families import weight_of

    family = family_of(model)
    updates = {}
    for layer, (left, right) in sorted(factors.items()):
        weight = weight_of(get_module(model, family.mlp_out_path(layer)))
        dtype = weight.dtype
        left, right = left.detach().to(dtype).contiguous(), right.detach().to(dtype).contiguous()
        if tuple(weight.shape) == (left.shape[0], right.shape[0]):
            updates[family.mlp_out_weight_name(layer)] = LowRank(left, right)
        else:  # Conv1D layout [d_in, d_out]
            updates[family.mlp_out_weight_name(layer)] = LowRank(right, left)
    return Delta(updates=updates, meta=dict(meta))


# ---------------------------------------------------------------------------------------
# Trained editor files


def settings_key(method: str, fingerprint: str, settings: Mapping[str, Any]) -> str:
    """The cache key of a trained editor: method, base fingerprint and network settings."""
    text = json.dumps({"method": method, "fingerprint": fingerprint, "settings": dict(settings)},
                      sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def editors_root() -> Path:
    from kedit_vc.models.cache import cache_root

    return cache_root() / "editors"


def default_editor_dir(method: str, fingerprint: str, settings: Mapping[str, Any]) -> Path:
    """``<cache>/editors/<method>/<key>``."""
    return editors_root() / method / settings_key(method, fingerprint, settings)


def tensors_hash(tensors: Mapping[str, torch.Tensor]) -> str:
    """A content hash of named tensors (names, dtypes, shapes, bytes), independent of file layout."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def save_editor(folder: Path, tensors: Mapping[str, torch.Tensor], record: Mapping[str, Any]) -> str:
    """Write a trained editor atomically; returns its hash (tensors and record, without the hash)."""
    from safetensors.torch import save_file

    from kedit_vc.fsio import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in record.items() if k != "editor_hash"}
    digest = hashlib.sha256((tensors_hash(tensors) + json.dumps(body, sort_keys=True)).encode()).hexdigest()
    temporary = folder / (EDITOR_TENSORS + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(temporary))
    temporary.replace(folder / EDITOR_TENSORS)
    atomic_write_text(folder / EDITOR_JSON, json.dumps({**body, "editor_hash": digest}, sort_keys=True, indent=1))
    return digest


@dataclass(frozen=True)
class TrainedEditor:
    """A loaded trained editor: its folder, record (editor.json) and tensors."""

    folder: Path
    record: Mapping[str, Any]
    tensors: Mapping[str, torch.Tensor]

    @property
    def hash(self) -> str:
        return str(self.record["editor_hash"])


def load_editor(method: str, fingerprint: str, settings: Mapping[str, Any], explicit: str | None,
                model_hint: str = "MODEL") -> TrainedEditor:
    """The trained editor for this base model and settings (``explicit``: that folder).

    Raises ``NoTrainedEditor`` naming the train command when there is none, and
    ``EditorMismatch`` when the folder was trained for another base model, method or settings.
    """
    from safetensors.torch import load_file

    folder = Path(explicit).expanduser() if explicit else default_editor_dir(method, fingerprint, settings)
    command = f"kvc train {method} --model {model_hint} --data FILE"
    if not (folder / EDITOR_JSON).is_file() or not (folder / EDITOR_TENSORS).is_file():
        where = f"in {folder}" if explicit else f"for base model {fingerprint[:12]} with these settings"
        raise NoTrainedEditor(f"no trained {method} editor {where}; train one first: {command}"
                              + (" (with the same --hparam settings)" if settings else ""))
    try:
        record = json.loads((folder / EDITOR_JSON).read_text())
    except ValueError as error:
        raise EditorMismatch(f"{folder / EDITOR_JSON}: not a trained editor record ({error})") from None
    if record.get("method") != method:
        raise EditorMismatch(f"{folder} holds a {record.get('method')!r} editor, not {method!r}")
    if record.get("fingerprint") != fingerprint:
        raise EditorMismatch(
            f"the {method} editor in {folder} was trained for base model {str(record.get('fingerprint'))[:12]}, "
            f"not this one ({fingerprint[:12]}); train one for it: {command}")
    theirs = record.get("settings", {})
    if json.loads(json.dumps(dict(settings), default=list)) != theirs:
        raise EditorMismatch(f"the {method} editor in {folder} was trained with settings {theirs}, "
                             f"not {dict(settings)}; train one with these: {command}")
    return TrainedEditor(folder, record, load_file(str(folder / EDITOR_TENSORS)))


def layer_shapes(model: torch.nn.Module, layers: Sequence[int]) -> list[tuple[int, int]]:
    """(d_in, d_out) of each edited layer's MLP down-projection."""
    shapes = []
    for module in _mlp_out_modules(model, layers).values():
        features: Any = module
        if hasattr(features, "in_features"):
            shapes.append((int(features.in_features), int(features.out_features)))
        else:  # GPT-2 Conv1D: weight [d_in, d_out]
            weight = features.weight
            shapes.append((int(weight.shape[0]), int(weight.shape[1])))
    return shapes

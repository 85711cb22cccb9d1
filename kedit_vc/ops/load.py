"""``load_edited``: any revision of a store as a usable HuggingFace causal LM.

The one way to get the model a revision stands for: the store's base model (checked against
its fingerprint), its live weight deltas added (``Store.live_sum``), and its other live
patches (GRACE codebooks...) attached as forward hooks on their modules, each checked
against the model first. The result behaves as the HF model it is: ``model(input_ids)``
gives logits aligned with the input and ``model.generate`` works (a codebook acts per
token, so the KV cache changes nothing). ``kvc eval``, ``kvc check``, ``kvc commit`` and
``kvc model generate --rev`` materialise revisions the same way (``Weights.set_revision``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kedit_vc.models import LoadedModel
    from kedit_vc.store import Store


def load_revision(store: "Store", rev: str = "HEAD", progress: bool = False) -> "LoadedModel":
    """The store's base model moved to ``rev`` (see the module doc)."""
    from kedit_vc.patches.memory.mello import bind_tokenizer

    from .weights import Weights, load_base

    sha = store.resolve(rev)
    loaded = load_base(store, progress=progress)
    bind_tokenizer(loaded.model, loaded.tokenizer)  # MeLLo's model.answer(question) reads text
    Weights(loaded.model).set_revision(store, sha)
    return loaded


def load_edited(store_dir: str | os.PathLike[str] = ".", rev: str = "HEAD", progress: bool = False,
                device: str | None = None, dtype: str | None = None, device_map: str | None = None,
                ) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of revision ``rev`` of the store at or above ``store_dir``:
    the base model with every live patch applied, whatever its kind. ``device`` (auto, cpu,
    cuda, cuda:N, mps), ``dtype`` (float32, bfloat16, float16) and ``device_map`` (auto, balanced,
    sequential) are those of ``kvc --device/--dtype/--device-map``; unset, ``KVC_DEVICE``... then
    auto/float32.

    >>> model, tokenizer = load_edited(".", "HEAD~2")
    >>> model.generate(**tokenizer("The Eiffel Tower is in", return_tensors="pt"), max_new_tokens=5)
    """
    from kedit_vc.models.placement import Placement, parse_device, parse_device_map, parse_dtype, using
    from kedit_vc.store import open_store

    placement = Placement(parse_device(device, "device="), parse_dtype(dtype, "dtype="),
                          parse_device_map(device_map, "device_map="))
    with open_store(store_dir) as store, using(placement):
        loaded = load_revision(store, rev, progress)
    return loaded.model, loaded.tokenizer

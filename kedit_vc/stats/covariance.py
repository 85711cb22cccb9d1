"""``C = E[k kᵀ]`` of the MLP output projection's input, for many layers in one pass.

Keys are collected with forward pre-hooks on every requested layer during one pass
over the corpus (the peer implementation makes one pass per layer). Results are cached
as safetensors keyed by model fingerprint, layer, corpus id and token count, with the
time and tokens in the file's metadata, so a second edit at the same layer costs nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from kedit_vc.fsio import atomic_path
from kedit_vc.models.cache import cache_root
from kedit_vc.models.families import decoder_stack, family_of, get_module, max_positions

from .corpus import corpus_id, sample_documents, text_batches

DEFAULT_TOKENS = 100_000


def _cache_file(stats_dir: Path, fingerprint: str, layer: int, corpus: str, tokens: int) -> Path:
    name = f"{fingerprint.replace(':', '-')}/{corpus}/layer{layer:03d}-n{tokens}.safetensors"
    return stats_dir / name


def _read(path: Path) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.get_tensor("mom2")
    except Exception:  # noqa: BLE001 - a truncated or foreign file: recompute rather than trust it
        return None


def key_second_moments(model: torch.nn.Module, tokenizer: Any, fingerprint: str,
                       layers: Sequence[int], n_tokens: int = DEFAULT_TOKENS,
                       corpus: str | None = None, seed: int = 0,
                       stats_dir: str | os.PathLike[str] | None = None,
                       progress: bool = True) -> dict[int, torch.Tensor]:
    """layer -> ``E[k kᵀ]`` [d_mlp, d_mlp] (float32), computing missing layers in one pass."""
    corpus = corpus or os.environ.get("KVC_STATS_TEXT") or None
    root = Path(stats_dir) if stats_dir else cache_root() / "stats"
    cid = corpus_id(corpus, seed)
    found: dict[int, torch.Tensor] = {}
    for layer in layers:
        cached = _read(_cache_file(root, fingerprint, layer, cid, n_tokens))
        if cached is not None:
            found[layer] = cached
    missing = [layer for layer in layers if layer not in found]
    if missing:
        found.update(_compute(model, tokenizer, fingerprint, missing, n_tokens, corpus, seed,
                              root, cid, progress))
    return {layer: found[layer] for layer in layers}


class _Accumulator:
    """Forward pre-hooks that add ``k kᵀ`` of every counted token into float64 sums."""

    def __init__(self, modules: dict[int, torch.nn.Module], skip_first_position: bool) -> None:
        self.sums: dict[int, torch.Tensor] = {}
        self.tokens = 0
        self.counting = True
        self.skip_first_position = skip_first_position
        self.handles = [m.register_forward_pre_hook(self._hook(layer)) for layer, m in modules.items()]
        self.first_layer = min(modules)

    def _hook(self, layer: int):  # noqa: ANN202
        def hook(_module: torch.nn.Module, args: tuple) -> None:
            if not self.counting:
                return
            keys = args[0]
            if self.skip_first_position:
                keys = keys[:, 1:]
            keys = keys.reshape(-1, keys.shape[-1]).double()
            self.sums[layer] = self.sums.get(layer, 0) + keys.T @ keys
            if layer == self.first_layer:
                self.tokens += keys.shape[0]
        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def _compute(model: torch.nn.Module, tokenizer: Any, fingerprint: str, layers: Sequence[int],
             n_tokens: int, corpus: str | None, seed: int, root: Path, cid: str,
             progress: bool) -> dict[int, torch.Tensor]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    family = family_of(model)
    modules = {layer: get_module(model, family.mlp_out_path(layer)) for layer in layers}
    started = time.perf_counter()
    columns = (TextColumn("[bold]key statistics[/] layers " + ",".join(map(str, layers))),
               BarColumn(), TextColumn("{task.completed:,}/{task.total:,} tokens"),
               TimeRemainingColumn())
    # Sampling reads one new token per forward (KV cache), so its forwards are the pass.
    accumulator = _Accumulator(modules, skip_first_position=corpus is not None)
    try:
        with Progress(*columns, disable=not progress, transient=True) as bar:
            task = bar.add_task("stats", total=n_tokens)
            if corpus is None:
                def on_step(counting: bool) -> None:
                    accumulator.counting = counting
                    bar.update(task, completed=min(accumulator.tokens, n_tokens))
                for _ in sample_documents(model, tokenizer, n_tokens, seed, on_step):
                    pass
            else:
                device = next(modules[layers[0]].parameters()).device   # the pass runs where the layer is
                for ids in text_batches(tokenizer, corpus, n_tokens, max_positions(model)):
                    decoder_stack(model)(input_ids=ids.to(device), use_cache=False)
                    bar.update(task, completed=min(accumulator.tokens, n_tokens))
    finally:
        accumulator.close()
    seconds = time.perf_counter() - started
    count = max(accumulator.tokens, 1)
    result = {}
    for layer in layers:
        mom2 = (accumulator.sums[layer] / count).float().cpu().contiguous()   # cached on disk: CPU
        path = _cache_file(root, fingerprint, layer, cid, n_tokens)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({"mom2": mom2}, str(tmp), metadata={
                "tokens": str(accumulator.tokens), "seconds": f"{seconds:.2f}",
                "layers_in_pass": ",".join(map(str, layers)), "corpus": cid, "fingerprint": fingerprint})
        result[layer] = mom2
    return result

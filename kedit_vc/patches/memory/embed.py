"""Sentence embeddings from the model itself: mean-pooled hidden states at one block.

IKE and MemPrompt retrieve by embedding similarity; the papers use a separate sentence
encoder (all-MiniLM, Sentence-BERT). Here the encoder is the edited model's own decoder,
cut at block ``layer`` (its output, mean-pooled over the tokens after the first), so nothing
is downloaded and retrieval works for any model kedit_vc loads. The first position is left
out because it is the attention sink (or the shared prefix token), whose state has a large
norm and carries no content.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from kedit_vc.models.families import blocks_of


class _Stop(Exception):
    """Raised by the hook on block ``layer`` to end the forward pass there."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__()
        self.hidden = hidden


@torch.no_grad()
def hidden_states(model: torch.nn.Module, forward: Callable[..., Any], input_ids: torch.Tensor,
                  attention_mask: torch.Tensor | None, layer: int) -> torch.Tensor:
    """Block ``layer``'s output [b, t, d] (float32) for ``input_ids`` [b, t], running only the
    blocks up to it; ``forward`` is the decoder's own forward (not a wrapper around it)."""
    block = blocks_of(model)[layer]

    def stop(_module: torch.nn.Module, _args: tuple, output: Any) -> None:
        raise _Stop(output[0] if isinstance(output, tuple) else output)

    handle = block.register_forward_hook(stop)
    try:
        forward(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _Stop as stopped:
        return stopped.hidden.float()
    finally:
        handle.remove()
    raise RuntimeError(f"block {layer} did not run")  # pragma: no cover - the hook always fires


def pooled(hidden: torch.Tensor, length: int) -> torch.Tensor:
    """Mean of ``hidden`` [t, d] over positions 1..length-1 (position 0 when ``length`` is 1): [d]."""
    start = 1 if length > 1 else 0
    return hidden[start:length].mean(dim=0)


def prefix_means(hidden: torch.Tensor) -> torch.Tensor:
    """For each position i of ``hidden`` [t, d], the mean over positions min(1, i)..i: [t, d];
    what ``pooled`` gives for the prefix ending at i, for all i at once."""
    t = hidden.shape[0]
    out = torch.empty_like(hidden)
    out[0] = hidden[0]
    if t > 1:
        sums = hidden[1:].cumsum(dim=0)
        counts = torch.arange(1, t, device=hidden.device, dtype=hidden.dtype)[:, None]
        out[1:] = sums / counts
    return out


def embed_sequences(model: torch.nn.Module, forward: Callable[..., Any], sequences: Sequence[Sequence[int]],
                    layer: int, batch_size: int = 32) -> torch.Tensor:
    """Pooled embeddings [n, d] of token id lists (right-padded batches, pads masked)."""
    device = next(model.parameters()).device
    out: list[torch.Tensor] = []
    for start in range(0, len(sequences), batch_size):
        chunk = [list(s) for s in sequences[start:start + batch_size]]
        width = max(len(s) for s in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for row, seq in enumerate(chunk):
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        hidden = hidden_states(model, forward, ids.to(device), mask.to(device), layer)
        out += [pooled(hidden[row], len(seq)).cpu() for row, seq in enumerate(chunk)]
    return torch.stack(out) if out else torch.zeros(0, 0)


def normalized(vectors: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    """Rows of ``vectors`` [..., d], minus ``center`` [d] when given, scaled to unit length."""
    if center is not None:
        vectors = vectors - center
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-8)

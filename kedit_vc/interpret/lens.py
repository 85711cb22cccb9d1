"""Logit lens: read each layer's residual state as if it were the last one.

A block's output at one position, passed through the final norm and the unembedding,
gives a next-token distribution per layer: where an answer first becomes readable, and
(before vs after an edit) where an edit changed what the subject's state says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from kedit_vc.errors import UsageError
from kedit_vc.models.families import family_of, get_module, num_layers
from kedit_vc.models.forward import final_hidden, logits_from_hidden
from kedit_vc.models.hooks import record_outputs

from .tokens import locate_subject, target_ids, token_label

POSITIONS = ("subject", "last")


@dataclass(frozen=True)
class LensResult:
    """Per-layer readings at one position.

    ``top[l]``: the ``k`` most likely (token, probability) pairs decoded from block
    ``l``'s output. ``ranks[target][l]``: 1-based rank of the target's first token
    (1 = top); ``probs[target][l]``: its probability.
    """

    prompt: str
    subject: str
    position: str          # "subject" (its last token) or "last" (the prompt's last token)
    token: str             # the token read at
    top: tuple[tuple[tuple[str, float], ...], ...]
    ranks: dict[str, tuple[int, ...]]
    probs: dict[str, tuple[float, ...]]

    @property
    def layers(self) -> int:
        return len(self.top)

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt, "subject": self.subject, "position": self.position, "token": self.token,
            "top": [[[t, round(p, 6)] for t, p in row] for row in self.top],
            "ranks": {k: list(v) for k, v in sorted(self.ranks.items())},
            "probs": {k: [round(p, 6) for p in v] for k, v in sorted(self.probs.items())},
        }


def layer_logits(model: torch.nn.Module, ids: Sequence[int], position: int) -> torch.Tensor:
    """Logits decoded from every block's output at ``position``: [n_layers, vocab]."""
    family = family_of(model)
    blocks = {str(i): get_module(model, family.block_path(i)) for i in range(num_layers(model))}
    with torch.no_grad(), record_outputs(blocks) as seen:
        final_hidden(model, torch.tensor([list(ids)]))
    states = torch.stack([seen[str(i)][0, position] for i in range(len(blocks))])  # [n_layers, d]
    with torch.no_grad():
        normed = get_module(model, family.final_norm)(states)
        return logits_from_hidden(model, normed).float()


def logit_lens(model: torch.nn.Module, tokenizer: Any, prompt: str, subject: str,
               targets: Sequence[str] = (), *, position: str = "subject", top_k: int = 5) -> LensResult:
    """Decode the state at the subject's last token (or the prompt's last) at every layer.

    ``targets`` (e.g. the old and new objects, no leading space needed) get a rank and
    probability per layer, read at their first token.
    """
    if position not in POSITIONS:
        raise UsageError(f"unknown lens position {position!r}; choose one of {', '.join(POSITIONS)}")
    loc = locate_subject(tokenizer, prompt, subject)
    index = loc.last if position == "subject" else len(loc.ids) - 1
    probs = torch.softmax(layer_logits(model, loc.ids, index), dim=-1)  # [n_layers, vocab]
    values, indices = probs.topk(top_k, dim=-1)
    top = tuple(
        tuple((token_label(tokenizer, int(i)), float(v)) for v, i in zip(vs, ids))
        for vs, ids in zip(values, indices)
    )
    ranks: dict[str, tuple[int, ...]] = {}
    target_probs: dict[str, tuple[float, ...]] = {}
    for target in targets:
        first = target_ids(tokenizer, target)[0]
        p = probs[:, first]  # [n_layers]
        ranks[target] = tuple(int(r) + 1 for r in (probs > p[:, None]).sum(-1))
        target_probs[target] = tuple(float(v) for v in p)
    return LensResult(prompt=loc.text, subject=subject, position=position,
                      token=token_label(tokenizer, loc.ids[index]), top=top, ranks=ranks, probs=target_probs)

"""GRACE (Hartvigsen et al. 2023, arXiv 2211.11031): edits as a codebook at one layer.

The codebook sits on one block's MLP down-projection. Per request, in order:

1. key ``k`` [d_mlp]: the projection's input at the last prompt token (the reference's
   ``key_id``: the last token before the target);
2. against the live codebook (earlier commits' entries as attached to the model, then this
   commit's), with ``d`` the distance to the nearest key ``j`` (radius ``ε_j``) and ``ε₀`` the
   initial radius:
   * ``d > ε₀ + ε_j``: a new entry (k, value, ε₀, label);
   * else, labels differ (split): a new entry with radius ``d/2`` and ``ε_j = d/2 − 1e-5``,
     so neither ball holds the other's key;
   * else, same label (expand, "coverage"): ``ε_j = max(ε_j, d)``, and entry ``j``'s value is
     trained on this request as well;
3. the value [d_model] of the chosen entry (warm: the projection's own output there) is
   trained with Adam so that the model, with the codebook replacing the projection's output
   wherever a token's input lies within a radius, predicts the target tokens.

The label is the target's token ids. Changes to an earlier commit's entry (a split or an
expansion) are recorded in this commit's ``CodebookPatch`` as that entry's new radius and
value, so the live codebook is a function of the live commits and a revert is exact (see
``kedit_vc.patches.codebook.live``). The weights are never touched: the delta is empty.
Deviations from the reference: training stops early once every target token is the argmax
(``early_stop``), which changes nothing the edit can be scored on and saves most steps; and
with ``raw_context`` (default) each request is placed and trained a second time on its
prompt without the shared prefix token (SmolLM2's ``<|endoftext|>``), the form a user types.
That key lies 6–25 from the prefixed one at SmolLM2's codebook layer (radius 1.0), so
without it a user's raw prompt misses the codebook; GRACE's own rules place it (a new
entry with the same label, or an expansion where it falls near).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.delta import Delta
from kedit_vc.editors.base import EditContext, EditResult, base_fingerprint
from kedit_vc.editors.common.positions import fill
from kedit_vc.models.families import family_of
from kedit_vc.models.forward import LowerBlockReplay, final_hidden, logits_from_hidden
from kedit_vc.models.prompting import NO_PREFIX, encode_continuation, encode_text
from kedit_vc.patches.attach import side_patches
from kedit_vc.patches.codebook.core import CodebookPatch, entry_id, module_dims
from kedit_vc.patches.codebook.live import codebook_output, live_entries, nearest

from .hparams import GraceHparams, resolve

#: How far below half the distance a split puts the older entry's radius (the reference's 1e-5).
SPLIT_MARGIN = 1e-5


@dataclass
class Entry:
    """One codebook entry while a commit is being made (``earlier``: from a live commit)."""

    id: str
    key: torch.Tensor      # [d_in] float32
    value: torch.Tensor    # [d_out] float32
    radius: float
    label: tuple[int, ...]
    earlier: bool
    changed: bool = False


class Codebook:
    """The entries at one module during an edit: the live ones, then this commit's."""

    def __init__(self, module: str, entries: list[Entry]) -> None:
        self.module = module
        self.entries = entries
        self.expanded = 0
        self.split = 0

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(keys [N, d_in], values [N, d_out], radii [N])."""
        return (torch.stack([e.key for e in self.entries]), torch.stack([e.value for e in self.entries]),
                torch.tensor([e.radius for e in self.entries], dtype=torch.float32))

    def place(self, key: torch.Tensor, label: tuple[int, ...], value: torch.Tensor, eps_init: float) -> int:
        """Where a request with ``key`` [d_in] and ``label`` goes (see the module doc); returns
        the index of the entry whose value is to be trained."""
        if self.entries:
            keys = torch.stack([e.key for e in self.entries])
            dist, index = nearest(key[None], keys)
            d, j = float(dist[0]), int(index[0])
            near = self.entries[j]
            if d <= eps_init + near.radius:
                if near.label != label:  # conflict: split the two balls
                    near.radius = max(0.0, d / 2 - SPLIT_MARGIN)
                    near.changed = True
                    self.split += 1
                    return self._add(key, label, value, d / 2)
                if d > near.radius:  # same label: cover the new key
                    near.radius = d
                    near.changed = True
                    self.expanded += 1
                return j
        return self._add(key, label, value, eps_init)

    def _add(self, key: torch.Tensor, label: tuple[int, ...], value: torch.Tensor, radius: float) -> int:
        self.entries.append(Entry(entry_id(self.module, key, label), key, value, radius, label, earlier=False))
        return len(self.entries) - 1

    def patch(self, key_dim: int, value_dim: int) -> CodebookPatch:
        """This commit's patch: its new entries, and the earlier entries it changed."""
        new = [e for e in self.entries if not e.earlier]
        moved = [e for e in self.entries if e.earlier and e.changed]
        return CodebookPatch(
            module=self.module, key_dim=key_dim, value_dim=value_dim, ids=tuple(e.id for e in new),
            keys=_rows([e.key for e in new], key_dim), values=_rows([e.value for e in new], value_dim),
            radii=torch.tensor([e.radius for e in new], dtype=torch.float32), labels=tuple(e.label for e in new),
            adjusted_ids=tuple(e.id for e in moved),
            adjusted_radii=torch.tensor([e.radius for e in moved], dtype=torch.float32),
            adjusted_values=_rows([e.value for e in moved], value_dim), meta={"method": "grace"})


def _rows(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    return torch.stack(rows) if rows else torch.zeros(0, width)


class GraceEditor:
    name = "grace"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: GraceHparams, context: EditContext) -> EditResult:
        started = time.perf_counter()
        hp = resolve(model, hparams)
        assert hp.layer is not None
        path = family_of(model).mlp_out_path(hp.layer)
        module = model.get_submodule(path)
        key_dim, value_dim = module_dims(model, path)
        side = side_patches(model)
        attached = list(side.patches)
        live = live_entries([p for p in attached if p.kind == "codebook"], path).get(path)
        entries = [] if live is None else [
            Entry(i, k, v, float(r), label, earlier=True)
            for i, k, v, r, label in zip(live.ids, live.keys, live.values, live.radii, live.labels)]
        book = Codebook(path, entries)
        steps = []
        # The codebook at this module is trained here: its attached hook comes off meanwhile.
        side.set([p for p in attached if not (p.kind == "codebook" and p.module == path)])
        try:
            for request in requests:
                steps.append(self._edit_one(model, tokenizer, module, book, request, hp))
        finally:
            side.set(attached)
        patch = book.patch(key_dim, value_dim)
        info = {"module": path, "entries_added": len(patch.ids), "entries_changed": len(patch.adjusted_ids),
                "expanded": book.expanded, "split": book.split, "steps": steps,
                "seconds": round(time.perf_counter() - started, 4)}
        return EditResult(delta=Delta({}, {"method": "grace"}), info=info,
                          fingerprint=base_fingerprint(model, context), patches=(patch,))

    def _edit_one(self, model: torch.nn.Module, tokenizer: Any, module: torch.nn.Module, book: Codebook,
                  request: EditRequest, hp: GraceHparams) -> int:
        """Place one request in ``book`` and train its entry's value, then (``raw_context``) the
        same for its prompt without the shared prefix; returns the steps taken."""
        text = fill(request.prompt, request.subject)
        target = encode_continuation(tokenizer, " " + request.target_new)
        if not target:
            raise ValueError(f"empty target for edit {request.edit_id}")
        prompt = encode_text(tokenizer, text)
        taken = self._place_and_train(model, module, book, prompt, target, hp)
        raw = encode_text(tokenizer, NO_PREFIX + text)
        if hp.raw_context and raw != prompt:
            taken += self._place_and_train(model, module, book, raw, target, hp)
        return taken

    def _place_and_train(self, model: torch.nn.Module, module: torch.nn.Module, book: Codebook,
                         prompt: list[int], target: list[int], hp: GraceHparams) -> int:
        """Key ``prompt`` (token ids) at the codebook, place it with label ``target`` and train
        the chosen entry's value; returns the steps taken."""
        device = next(model.parameters()).device
        ids = torch.tensor([prompt + target[:-1]], device=device)      # [1, t]
        cols = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(target), device=device)
        labels = torch.tensor(target, device=device)
        where = len(prompt) - 1
        seen: dict[str, torch.Tensor] = {}

        def record(_m: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            seen["key"] = args[0][0, where].detach().float().cpu()
            seen["out"] = output[0, where].detach().float().cpu()

        assert hp.layer is not None   # resolved by edit()
        # The blocks below the codebook's give the same output in the key pass and at every
        # training step: recorded in the key pass, then replayed.
        with LowerBlockReplay(model, hp.layer) as replay:
            handle = module.register_forward_hook(record)
            try:
                with torch.no_grad():
                    final_hidden(model, ids)
            finally:
                handle.remove()
            replay.arm()
            if hp.value_init == "warm":
                value = seen["out"].clone()
            else:
                value = torch.rand(seen["out"].shape, generator=torch.Generator().manual_seed(hp.seed))
            index = book.place(seen["key"], tuple(target), value, hp.eps_init)
            return self._train(model, module, book, index, ids, cols, labels, hp)

    def _train(self, model: torch.nn.Module, module: torch.nn.Module, book: Codebook, index: int,
               ids: torch.Tensor, cols: torch.Tensor, labels: torch.Tensor, hp: GraceHparams) -> int:
        """Adam on entry ``index``'s value so that the target tokens ``labels`` [m] are predicted
        at positions ``cols`` [m] of ``ids`` [1, t] with the codebook in place (the blocks below
        the codebook's may be replayed: only the codebook's block and those above run)."""
        keys, values, radii = book.tensors()
        value = torch.nn.Parameter(values[index].clone())
        row = torch.zeros(len(values), 1, dtype=torch.bool)
        row[index] = True

        def hook(_m: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            table = torch.where(row, value[None], values)
            return codebook_output(args[0], output, keys, table, radii)

        optimizer = torch.optim.Adam([value], lr=hp.lr)
        handle = module.register_forward_hook(hook)
        requires = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        taken = 0
        try:
            for taken in range(1, hp.steps + 1):
                # the LM head at the target positions only: the same logits, a fraction of the cost
                hidden = final_hidden(model, ids)                                 # [1, t, d_model]
                logits = logits_from_hidden(model, hidden[0, cols]).float()      # [m, vocab]
                if hp.early_stop and bool((logits.argmax(-1) == labels).all()):
                    taken -= 1
                    break
                loss = F.cross_entropy(logits, labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        finally:
            handle.remove()
            for p, flag in zip(model.parameters(), requires):
                p.requires_grad_(flag)
        entry = book.entries[index]
        if taken:
            entry.value = value.detach().clone()
            entry.changed = True
        return taken

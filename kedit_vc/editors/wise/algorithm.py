"""WISE (Wang et al. 2024, arXiv 2405.14768): edits in routed, sharded side memories.

A side copy ``W_side`` of one block's MLP value matrix (the down-projection) holds the edits;
the main weights are never touched (the delta is empty). The edits go into *knowledge shards*
(§2.3.2): a shard starts from ``W_main`` (``D = W_side − W_main = 0``) with its own random
gradient mask (``mask_ratio`` of the entries, drawn from ``seed`` and the shard's number) and
takes edits until it holds ``shard_size`` of them; then the next one starts. Every
``shards_per_merge`` shards form a merge group, and the live side memory is the groups
TIES-merged in order (``kedit_vc.patches.sidememory.live``). Per request, in order:

1. the module's inputs ``A`` [t, d_in] on the edit sequence (prompt + target) and on its
   irrelevant inputs (``irrelevant_texts``: the request's declared neighbour probes, up to
   ``neighbour_irrelevant``, and ``irrelevant_per_edit`` generic texts drawn in turn from the
   ``irrelevant`` pool, a different few for each edit of the memory, as the reference draws
   one unrelated input per edit) are recorded once (they do not depend on the side memory,
   which sits at this very module's output);
2. the shard's ``D`` [d_out, d_in] is trained by SGD through the shard's gradient mask, with
   the shard's output on every token of the edit sequence (as the reference trains
   ``new_weight`` alone), on the paper's loss: the edit's cross-entropy on the target tokens
   plus the routing margins on the activation ``Δ(x) = mean_t ‖a_t·Dᵀ‖``:
   ``[Δ(irr) − α]₊ + [β − Δ(edit)]₊ + [Δ(irr) − Δ(edit) + γ]₊`` (each averaged over its
   positive entries, as the reference does); after each step ``D`` is clipped element-wise
   to ``±norm_constraint``. Training stops early only where the reference's loss is spent:
   every target token the argmax and all three margins met (α included), else after
   ``steps``. The blocks below the memory's are replayed and the LM head is applied at the
   target positions only, which gives the same logits at a fraction of the cost;
3. the edit's final activation ``Δ(edit)`` on its shard is recorded; the router's threshold
   is ``act_ratio`` times the least recorded activation of the live edits (WISE-Merge's).

A commit's patch holds, per shard it wrote into, ``D_after − D_before`` (zero outside the
shard's mask: stored sparse), the shard and group numbers and the activations, so the live
memory is a function of the live patches (see ``kedit_vc.patches.sidememory``) and a revert
is exact.

Faithful to the paper and its reference (EasyEdit's ``WISE``, WISE-Merge, ``retrieve=False``):
the side memory at one value matrix, the activation score and the three margins, the
per-shard random gradient masks, the shard/merge schedule (``save_freq`` / ``merge_freq``),
the TIES merge (magnitude trim at ``density``, sign election by sum, disjoint weighted mean;
the memory merged so far weighted 0.6 against the new group's shards), the threshold rule
(``act_ratio`` x least edit activation) and the merge of pending shards before use.
Memory replay (``replay`` > 0; after Appendix B.3, off in the reference's defaults): each step
also adds ``[max(β, r) − Δ(earlier)]₊`` for ``replay`` earlier edits of the same shard taken
in turn, ``r`` the activation the earlier edit was recorded with, so a later edit cannot drag
an earlier one under the router's threshold (``act_ratio`` x the least recorded activation).
The reference's positive replay (WISE-Retrieve only) pushes to β alone; here the earlier
edits' activations (30-60 on SmolLM2) sit far above β = 20 and still fall under the
threshold, so the floor is each edit's own recorded activation (our change). Each patch keeps its edits' texts
(``meta["texts"]``, JSON) so a later commit can replay them. The reference's negative
replay (earlier groups' edits kept off the current shard) belongs to WISE-Retrieve's
separate memories (below). Simplified: plain SGD
without the reference's weight decay of 1e-5 (which would touch every entry and make the
memory dense); the activation is ``‖a·Dᵀ‖`` as in the paper (the reference takes the norm
after the MLP's activation function). Augmenting context prefixes (``prefixes``: the reference
trains each edit on ten model-written prefixes too, five of 5 tokens and five of 10) are built
but off by default (on SmolLM2 dev records they lowered every figure at 2.7x the CPU): each
edit sequence (bare and prefixed) gets the cross-entropy, its own
activation and the margins against every irrelevant input, and the recorded activation is the
mean over them (the reference's ``save_editing_activation``); our prefixes are top-5 sampled
(seeded) where the reference beam-searches. The generic pool is hand-written text, not a
dataset split.

WISE-Retrieve (``retrieve = true``): the same training; the live memory keeps each merge group
apart with its own threshold and routes top-1 (``kedit_vc.patches.sidememory.live``). With
``replay`` > 0 it adds the reference's negative replay too: each step also pushes one edit of
every earlier merge group (taken in turn) under α on the shard in training,
``[Δ(e) − α]₊`` averaged over the groups, so a later memory does not answer for an earlier
one's edits."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.delta import Delta
from kedit_vc.editors.base import EditContext, EditResult, base_fingerprint
from kedit_vc.editors.common.positions import fill, neighbour_texts
from kedit_vc.editors.common.templates import context_templates
from kedit_vc.models.families import family_of
from kedit_vc.models.forward import LowerBlockReplay, final_hidden, logits_from_hidden
from kedit_vc.models.prompting import encode_continuation, encode_text, pad_batch, pad_id
from kedit_vc.patches.attach import side_patches
from kedit_vc.patches.sidememory.core import SideMemoryPatch, linear_dims
from kedit_vc.patches.sidememory.live import LiveMemory, live_memory

from .hparams import WiseHparams, resolve


def draw_mask(out_dim: int, in_dim: int, ratio: float, seed: int) -> torch.Tensor:
    """The knowledge shard's gradient mask: bool [out_dim, in_dim], each entry kept with
    probability ``ratio`` (torch's CPU generator seeded with ``seed``)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(out_dim, in_dim, generator=generator) < ratio


def positive_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of the positive entries of ``x`` (0 when none): the reference's hinge average."""
    positive = x[x > 0]
    return positive.mean() if positive.numel() else x.new_zeros(())


def margin_loss(edit_act: torch.Tensor, irrelevant_act: torch.Tensor, hp: WiseHparams) -> torch.Tensor:
    """The routing margins for the edit's activation (scalar, or [r]: one per edit sequence,
    bare and prefixed) and the irrelevant ones' [k]; the gap is taken over every pair."""
    edit = edit_act.reshape(-1, 1)
    return (positive_mean(irrelevant_act.reshape(1, -1) - edit + hp.gamma) + positive_mean(irrelevant_act - hp.alpha)
            + positive_mean(hp.beta - edit))


def separated(edit_act: torch.Tensor, irrelevant_act: torch.Tensor, hp: WiseHparams) -> bool:
    """Whether all three routing margins hold: every irrelevant activation at most α, every
    edit sequence's at least β and at least γ over every irrelevant one (the margin loss is
    then 0, the reference's stopping point)."""
    edit, worst = edit_act.min().item(), irrelevant_act.max().item()
    return worst <= hp.alpha and edit >= hp.beta and edit >= worst + hp.gamma


def irrelevant_texts(request: EditRequest, hp: WiseHparams, number: int) -> list[str]:
    """The inputs the router is trained to keep off the side memory for one edit: up to
    ``neighbour_irrelevant`` of the request's declared neighbour probes (prompt and the
    answer they keep: same relation, other subjects, the inputs a router confuses most),
    then ``irrelevant_per_edit`` generic texts of the pool taken in turn, the memory's
    ``number``-th edit (counted along its history from 0) starting at ``number ×
    irrelevant_per_edit`` (mod the pool): successive edits see different ones, as the
    reference draws one unrelated input per edit."""
    pool, count = hp.irrelevant, min(hp.irrelevant_per_edit, len(hp.irrelevant))
    start = number * count
    return neighbour_texts(request, hp.neighbour_irrelevant) + [pool[(start + i) % len(pool)] for i in range(count)]


def mean_activation(inputs: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``mean_t ‖a_t·Dᵀ‖`` of ``inputs`` [t, d_in] for ``delta`` [d_out, d_in] (scalar)."""
    return (inputs @ delta.T).norm(dim=-1).mean()


def row_activations(inputs: torch.Tensor, mask: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``mean_t ‖a_t·Dᵀ‖`` per row of padded ``inputs`` [r, t, d_in] over the tokens ``mask``
    [r, t] keeps, for ``delta`` [d_out, d_in]: [r]."""
    norms = (inputs @ delta.T).norm(dim=-1)
    return (norms * mask).sum(-1) / mask.sum(-1)


def edit_templates(model: torch.nn.Module, tokenizer: Any, hp: WiseHparams) -> tuple[str, ...]:
    """``"{}"`` and ``hp.prefixes`` model-written prefixes, as the reference trains on: half of
    5 tokens, the rest of 10 (generated with every side patch off, so they depend on the main
    weights alone and a fresh process gets the same ones)."""
    if hp.prefixes == 0:
        return ("{}",)
    side = side_patches(model)
    attached = list(side.patches)
    side.set([])
    try:
        short = context_templates(model, tokenizer, hp.prefixes // 2, 5, seed=hp.seed)
        long = context_templates(model, tokenizer, hp.prefixes - hp.prefixes // 2, 10, seed=hp.seed)
    finally:
        side.set(attached)
    return short + long[1:]


@dataclass
class _EditBatch:
    """An edit's training sequences, bare and prefixed: ``ids`` [r, t] right-padded, ``mask``
    [r, t], the target positions ``rows``/``cols`` [m] and their ``labels`` [m]."""

    ids: torch.Tensor
    mask: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    labels: torch.Tensor


def edit_batch(tokenizer: Any, request: EditRequest, templates: Sequence[str]) -> _EditBatch:
    """The edit sequence (prompt + target, the last target token dropped) under each template;
    row 0 is the bare prompt (``templates[0]`` is ``"{}"``)."""
    target = encode_continuation(tokenizer, " " + request.target_new)
    if not target:
        raise ValueError(f"empty target for edit {request.edit_id}")
    prompt = fill(request.prompt, request.subject)
    prompts = [encode_text(tokenizer, t.format(prompt)) for t in templates]
    ids, mask = pad_batch([p + target[:-1] for p in prompts], pad_id(tokenizer))
    rows = torch.tensor([r for r in range(len(prompts)) for _ in target])
    cols = torch.tensor([len(p) - 1 + j for p in prompts for j in range(len(target))])
    return _EditBatch(ids, mask, rows, cols, torch.tensor(target * len(prompts)))


@dataclass
class _Shard:
    """The shard the next edit trains: its number, merge group, ``start`` [d_out, d_in] (its
    ``D`` so far), gradient ``mask`` bool [d_out, d_in] and how many edits it holds."""

    index: int
    group: int
    start: torch.Tensor
    mask: torch.Tensor
    edits: int


def next_shard(live: LiveMemory | None, hp: WiseHparams, out_dim: int, in_dim: int) -> _Shard:
    """The shard the next edit goes into: the newest live one while it holds fewer than
    ``shard_size`` edits, else a new one (``D = 0``, a fresh mask drawn from ``seed`` and its
    number) in the newest group while that group has fewer than ``shards_per_merge`` shards,
    else in a new group (WISE's schedule: ``save_freq`` = shard_size, ``merge_freq`` =
    shard_size x shards_per_merge)."""
    if live is None:
        return _Shard(0, 0, torch.zeros(out_dim, in_dim), draw_mask(out_dim, in_dim, hp.mask_ratio, hp.seed), 0)
    newest = live.shards[-1]
    if newest.edits < hp.shard_size:
        return _Shard(newest.index, newest.group, newest.delta.clone(), newest.mask, newest.edits)
    index = newest.index + 1
    in_group = sum(1 for s in live.shards if s.group == newest.group)
    group = newest.group if in_group < hp.shards_per_merge else newest.group + 1
    return _Shard(index, group, torch.zeros(out_dim, in_dim),
                  draw_mask(out_dim, in_dim, hp.mask_ratio, shard_seed(hp.seed, index)), 0)


def replay_loss(earlier: Sequence[tuple[torch.Tensor, float]], delta: torch.Tensor, hp: WiseHparams,
                turn: int) -> torch.Tensor:
    """``[max(β, r) − Δ(e)]₊`` averaged over ``hp.replay`` of the shard's ``earlier`` edits (each
    its inputs [t, d_in] and the activation ``r`` it was recorded with), taken in turn from
    position ``turn`` (0 when replay is off or there are none)."""
    if hp.replay == 0 or not earlier:
        return delta.new_zeros(())
    count = min(hp.replay, len(earlier))
    chosen = [earlier[(turn + i) % len(earlier)] for i in range(count)]
    acts = torch.stack([mean_activation(inputs, delta) for inputs, _ in chosen])
    floors = torch.tensor([max(hp.beta, recorded) for _, recorded in chosen], device=acts.device)
    return positive_mean(floors - acts)


def negative_replay_loss(groups: Sequence[Sequence[torch.Tensor]], delta: torch.Tensor, hp: WiseHparams,
                         turn: int) -> torch.Tensor:
    """``[Δ(e) − α]₊`` averaged over one edit of each earlier merge group (``groups``: per group
    its edits' module inputs, each [t, d_in]), the edit taken in turn from position ``turn``:
    WISE-Retrieve's negative replay, which keeps the shard in training from answering for
    edits another memory holds (0 when there are none)."""
    chosen = [group[turn % len(group)] for group in groups if group]
    if not chosen:
        return delta.new_zeros(())
    return positive_mean(torch.stack([mean_activation(inputs, delta) for inputs in chosen]) - hp.alpha)


def memory_texts(patches: Sequence[SideMemoryPatch], field: str, number: int) -> list[tuple[list[int], float]]:
    """The edit sequences (token ids) of the edits ``patches`` put into the shard (``field``
    "shard") or merge group (``field`` "group") numbered ``number``, oldest first, each with
    the activation its commit recorded (patches written before edits kept their texts
    contribute none)."""
    out: list[tuple[list[int], float]] = []
    for patch in patches:
        if patch.kind == "sidememory" and getattr(patch, field) == number and "texts" in patch.meta:
            out.extend(zip(json.loads(patch.meta["texts"]), (float(a) for a in patch.activations)))
    return out


def shard_seed(seed: int, shard: int) -> int:
    """The mask seed of shard ``shard`` (shard 0 uses ``seed`` itself, as WISE-lite did)."""
    return seed if shard == 0 else (seed * 1_000_003 + shard) % (2**63 - 1)


class WiseEditor:
    name = "wise"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: WiseHparams, context: EditContext) -> EditResult:
        started = time.perf_counter()
        hp = resolve(model, hparams)
        assert hp.layer is not None  # resolve() fills the model's default
        path = family_of(model).mlp_out_path(hp.layer)
        module = model.get_submodule(path)
        in_dim, out_dim = linear_dims(model, path)
        side = side_patches(model)
        attached = list(side.patches)
        mine = [p for p in attached if p.kind == "sidememory" and p.module == path]
        device = next(model.parameters()).device
        patches: list[SideMemoryPatch] = []
        infos: list[dict[str, Any]] = []
        held = len(live_memory(mine, path)[path].edit_ids) if mine else 0
        templates = edit_templates(model, tokenizer, hp)
        # The side memory at this module is trained here: its attached hook comes off meanwhile.
        side.set([p for p in attached if not (p.kind == "sidememory" and p.module == path)])
        try:
            seen: dict[str, torch.Tensor] = {}   # module inputs per text (the main model does not change here)
            pending: list[tuple[EditRequest, float, list[int]]] = []
            shard: _Shard | None = None
            increment = torch.zeros(out_dim, in_dim, device=device)
            for number, request in enumerate(requests, 1):
                if shard is None:
                    shard = next_shard(live_memory(mine + patches, path).get(path), hp, out_dim, in_dim)
                    start, mask = shard.start.to(device), shard.mask.to(device)
                    increment.zero_()
                    earlier = ([(self._inputs(model, module, ids), act)
                                for ids, act in memory_texts(mine + patches, "shard", shard.index)]
                               if hp.replay else [])
                    others = ([[self._inputs(model, module, ids) for ids, _ in memory_texts(mine + patches, "group", g)]
                               for g in range(shard.group)] if hp.replay and hp.retrieve else [])
                nth = held + sum(len(p.edit_ids) for p in patches) + len(pending)   # the memory's nth edit
                texts = irrelevant_texts(request, hp, nth)
                for text in texts:
                    if text not in seen:
                        seen[text] = self._inputs(model, module, encode_text(tokenizer, text))
                act, info, ids, inputs = self._edit_one(model, tokenizer, module, start, increment, mask,
                                                        [seen[t] for t in texts], request, hp, templates,
                                                        earlier, nth, others)
                infos.append({**info, "shard": shard.index, "group": shard.group})
                pending.append((request, act, ids))
                if hp.replay:
                    earlier.append((inputs, act))
                if shard.edits + len(pending) >= hp.shard_size or number == len(requests):
                    patches.append(SideMemoryPatch.from_dense(
                        path, increment, mask, torch.tensor([a for _, a, _ in pending]),
                        tuple(r.edit_id for r, _, _ in pending), hp.act_ratio, hp.mask_ratio,
                        edits_before=held + sum(len(p.edit_ids) for p in patches),
                        meta={"method": "wise", "texts": json.dumps([i for _, _, i in pending])},
                        shard=shard.index, group=shard.group, shard_size=hp.shard_size, density=hp.density,
                        memory_weight=hp.memory_weight, retrieve=hp.retrieve, shards_per_merge=hp.shards_per_merge))
                    shard, pending = None, []
        finally:
            side.set(attached)
        live = live_memory(mine + patches, path)[path]
        info = {"module": path, "edits_added": len(requests), "edits_held": len(live.edit_ids),
                "threshold": round(live.threshold, 6), "shards": len(live.shards), "merges": live.merges,
                "memories": len(live.memories), "thresholds": [round(m.threshold, 6) for m in live.memories],
                "edits": infos, "seconds": round(time.perf_counter() - started, 4)}
        return EditResult(delta=Delta({}, {"method": "wise"}), info=info,
                          fingerprint=base_fingerprint(model, context), patches=tuple(patches))

    @staticmethod
    def _inputs(model: torch.nn.Module, module: torch.nn.Module, ids: list[int]) -> torch.Tensor:
        """The module's input at every token of ``ids``: [t, d_in] float32."""
        device = next(model.parameters()).device
        return WiseEditor._batch_inputs(model, module, torch.tensor([ids], device=device))[0]

    @staticmethod
    def _batch_inputs(model: torch.nn.Module, module: torch.nn.Module, ids: torch.Tensor,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
        """The module's input at every position of ``ids`` [r, t] (right-padded, ``mask``
        [r, t]): [r, t, d_in] float32."""
        seen: dict[str, torch.Tensor] = {}

        def record(_m: torch.nn.Module, args: tuple, _output: torch.Tensor) -> None:
            seen["a"] = args[0].detach().float()

        handle = module.register_forward_hook(record)
        try:
            with torch.no_grad():
                model(input_ids=ids, attention_mask=mask)
        finally:
            handle.remove()
        return seen["a"]

    def _edit_one(self, model: torch.nn.Module, tokenizer: Any, module: torch.nn.Module, start: torch.Tensor,
                  increment: torch.Tensor, mask: torch.Tensor, irrelevant: list[torch.Tensor],
                  request: EditRequest, hp: WiseHparams, templates: Sequence[str] = ("{}",),
                  earlier: list[tuple[torch.Tensor, float]] | None = None, nth: int = 0,
                  others: Sequence[Sequence[torch.Tensor]] = ()
                  ) -> tuple[float, dict[str, Any], list[int], torch.Tensor]:
        """Train ``increment`` [d_out, d_in] (in place) on one request, its edit sequence under
        each of ``templates`` (row 0 the bare prompt); returns the edit's final activation (the
        mean over those sequences, as the reference records it), a summary of the training, the
        token ids of the bare edit sequence and the module's inputs on it [t, d_in] (what a
        later replay of this edit reads).
        ``earlier``: the shard's earlier edits (module inputs [t, d_in], recorded activation), replayed;
        ``others``: per earlier merge group its edits' module inputs, kept off this shard."""
        device = start.device
        seqs = edit_batch(tokenizer, request, templates)
        batch, attention = seqs.ids.to(device), seqs.mask.to(device)         # [r, t]
        rows, cols, labels = seqs.rows.to(device), seqs.cols.to(device), seqs.labels.to(device)
        # [r, t, d_in]; a lone bare row runs unmasked, exactly as before prefixes existed
        edit_inputs = self._batch_inputs(model, module, batch, attention if len(templates) > 1 else None)
        token_mask = attention.to(edit_inputs.dtype)
        bare_length = int(attention[0].sum())
        ids = batch[0, :bare_length].tolist()
        param = torch.nn.Parameter(increment.clone())
        param.register_hook(lambda grad: grad * mask)                   # the knowledge shard's gradient mask

        def hook(_m: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            side = args[0].float() @ (start + param).T
            return output + side.to(output.dtype)

        optimizer = torch.optim.SGD([param], lr=hp.lr)
        handle = module.register_forward_hook(hook)
        requires = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        taken, loss_ft, loss_act = 0, 0.0, 0.0
        try:
            # Blocks below the side memory's give the same output at every step: replayed, and
            # the LM head applied at the target positions only (the same logits, a fraction of the cost).
            assert hp.layer is not None   # resolved by edit()
            with LowerBlockReplay(model, hp.layer) as replay:
                for taken in range(1, hp.steps + 1):
                    hidden = final_hidden(model, batch, attention if len(templates) > 1 else None)
                    replay.arm()
                    logits = logits_from_hidden(model, hidden[rows, cols]).float()   # [m, vocab]
                    delta = start + param
                    edit_act = row_activations(edit_inputs, token_mask, delta)     # [r]
                    irr_act = torch.stack([mean_activation(a, delta) for a in irrelevant])
                    ft, act = F.cross_entropy(logits, labels), margin_loss(edit_act, irr_act, hp)
                    replayed = (replay_loss(earlier or [], delta, hp, nth + taken)
                                + negative_replay_loss(others, delta, hp, nth + taken))
                    loss_ft, loss_act = ft.item(), act.item()
                    if (hp.early_stop and separated(edit_act, irr_act, hp) and bool((logits.argmax(-1) == labels).all())
                            and replayed.item() == 0):
                        taken -= 1
                        break
                    optimizer.zero_grad()
                    (ft + act + replayed).backward()
                    optimizer.step()
                    if hp.norm_constraint > 0:
                        with torch.no_grad():
                            total = start + param
                            clipped = total.clamp(-hp.norm_constraint, hp.norm_constraint)
                            param.copy_(torch.where(mask & (clipped != total), clipped - start, param))
        finally:
            handle.remove()
            for p, flag in zip(model.parameters(), requires):
                p.requires_grad_(flag)
        with torch.no_grad():
            increment.copy_(param.detach())
            delta = start + increment
            final = float(row_activations(edit_inputs, token_mask, delta).mean())
            irr = [round(float(mean_activation(a, delta)), 4) for a in irrelevant]
        return final, {"edit_id": request.edit_id, "steps": taken, "loss_ft": round(loss_ft, 4),
                       "loss_act": round(loss_act, 4), "activation": round(final, 4),
                       "irrelevant_activation": irr}, ids, edit_inputs[0, :bare_length]

"""WISE-lite (Wang et al. 2024, arXiv 2405.14768): edits in a routed side memory.

A side copy ``W_side`` of one block's MLP value matrix (the down-projection) holds the edits;
the main weights are never touched (the delta is empty). Per request, in order, continuing the
live side memory at that module (earlier commits' patches as attached to the model):

1. the module's inputs ``A`` [t, d_in] on the edit sequence (prompt + target) and on the
   ``irrelevant`` texts are recorded once (they do not depend on the side memory, which sits
   at this very module's output);
2. ``D = W_side − W_main`` [d_out, d_in] is trained by SGD through a fixed random gradient mask
   (``mask_ratio`` of the entries: the knowledge shard's mask, drawn once per memory from
   ``seed``), with the side memory's output on every token of the edit sequence, on the
   paper's loss: the edit's cross-entropy on the target tokens plus the routing margins on
   the activation ``Δ(x) = mean_t ‖a_t·Dᵀ‖``:
   ``[Δ(irr) − α]₊ + [β − Δ(edit)]₊ + [Δ(irr) − Δ(edit) + γ]₊`` (each averaged over its
   positive entries, as the reference does); after each step ``D`` is clipped element-wise
   to ``±norm_constraint``;
3. the edit's final activation ``Δ(edit)`` is recorded; the router's threshold is
   ``act_ratio`` times the least recorded activation of the live edits.

The commit's patch holds ``D_after − D_before`` (zero outside the mask: stored sparse) and the
activations, so the live memory is the sum of the live commits' increments (see
``kedit_vc.patches.sidememory``) and a revert is exact.

Simplified against the paper ("WISE-lite"): one knowledge shard, continued by every commit,
with no sharding by ``save_freq`` and no TIES merge; no memory replay; plain SGD without the
reference's weight decay of 1e-5 (which would touch every entry and make the memory dense);
the activation is ``‖a·Dᵀ‖`` as in the paper (the reference takes the norm after the MLP's
activation function); irrelevant inputs are fixed generic texts, not the dataset's locality
prompts; training stops early once every target token is the argmax and the edit's activation
clears β and every irrelevant activation by γ (``early_stop``; α is not required there).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.delta import Delta
from kedit_vc.editors.base import EditContext, EditResult, base_fingerprint
from kedit_vc.editors.common.positions import fill
from kedit_vc.models.families import family_of
from kedit_vc.models.prompting import encode_continuation, encode_text
from kedit_vc.patches.attach import side_patches
from kedit_vc.patches.sidememory.core import SideMemoryPatch, linear_dims
from kedit_vc.patches.sidememory.live import live_memory

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
    """The routing margins for the edit's activation (scalar) and the irrelevant ones' [k]."""
    return (positive_mean(irrelevant_act - edit_act + hp.gamma) + positive_mean(irrelevant_act - hp.alpha)
            + positive_mean(hp.beta - edit_act.reshape(1)))


def separated(edit_act: torch.Tensor, irrelevant_act: torch.Tensor, hp: WiseHparams) -> bool:
    """Whether the router already tells the edit from the irrelevant texts by the margins β and
    γ (the early stop ignores α: on small models the irrelevant activations stay above it)."""
    edit, worst = edit_act.item(), irrelevant_act.max().item()
    return edit >= hp.beta and edit >= worst + hp.gamma


def mean_activation(inputs: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``mean_t ‖a_t·Dᵀ‖`` of ``inputs`` [t, d_in] for ``delta`` [d_out, d_in] (scalar)."""
    return (inputs @ delta.T).norm(dim=-1).mean()


class WiseEditor:
    name = "wise"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: WiseHparams, context: EditContext) -> EditResult:
        started = time.perf_counter()
        hp = resolve(model, hparams)
        assert hp.layer is not None
        path = family_of(model).mlp_out_path(hp.layer)
        module = model.get_submodule(path)
        in_dim, out_dim = linear_dims(model, path)
        side = side_patches(model)
        attached = list(side.patches)
        mine = [p for p in attached if p.kind == "sidememory" and p.module == path]
        live = live_memory(mine, path).get(path)
        device = next(model.parameters()).device
        start = (live.delta if live is not None else torch.zeros(out_dim, in_dim)).to(device)
        mask = live.mask if live is not None else draw_mask(out_dim, in_dim, hp.mask_ratio, hp.seed)
        mask = mask.to(device)
        increment = torch.zeros(out_dim, in_dim, device=device)
        activations, infos = [], []
        # The side memory at this module is trained here: its attached hook comes off meanwhile.
        side.set([p for p in attached if not (p.kind == "sidememory" and p.module == path)])
        try:
            irrelevant = [self._inputs(model, module, encode_text(tokenizer, text)) for text in hp.irrelevant]
            for request in requests:
                act, info = self._edit_one(model, tokenizer, module, start, increment, mask, irrelevant,
                                           request, hp)
                activations.append(act)
                infos.append(info)
        finally:
            side.set(attached)
        patch = SideMemoryPatch.from_dense(
            path, increment, mask, torch.tensor(activations), tuple(r.edit_id for r in requests), hp.act_ratio,
            float(mine[-1].mask_ratio) if mine else hp.mask_ratio,
            edits_before=len(live.edit_ids) if live is not None else 0, meta={"method": "wise"})
        info = {"module": path, "edits_added": len(requests), "edits_held": patch.edits_before + len(requests),
                "threshold": round(min(patch.threshold(), live.threshold if live is not None else float("inf")), 6),
                "edits": infos, "seconds": round(time.perf_counter() - started, 4)}
        return EditResult(delta=Delta({}, {"method": "wise"}), info=info,
                          fingerprint=base_fingerprint(model, context), patches=(patch,))

    @staticmethod
    def _inputs(model: torch.nn.Module, module: torch.nn.Module, ids: list[int]) -> torch.Tensor:
        """The module's input at every token of ``ids``: [t, d_in] float32."""
        seen: dict[str, torch.Tensor] = {}

        def record(_m: torch.nn.Module, args: tuple, _output: torch.Tensor) -> None:
            seen["a"] = args[0][0].detach().float()

        handle = module.register_forward_hook(record)
        try:
            with torch.no_grad():
                model(input_ids=torch.tensor([ids], device=next(model.parameters()).device))
        finally:
            handle.remove()
        return seen["a"]

    def _edit_one(self, model: torch.nn.Module, tokenizer: Any, module: torch.nn.Module, start: torch.Tensor,
                  increment: torch.Tensor, mask: torch.Tensor, irrelevant: list[torch.Tensor],
                  request: EditRequest, hp: WiseHparams) -> tuple[float, dict[str, Any]]:
        """Train ``increment`` [d_out, d_in] (in place) on one request; returns the edit's final
        activation and a summary of the training."""
        prompt = encode_text(tokenizer, fill(request.prompt, request.subject))
        target = encode_continuation(tokenizer, " " + request.target_new)
        if not target:
            raise ValueError(f"empty target for edit {request.edit_id}")
        device = start.device
        ids = prompt + target[:-1]
        batch = torch.tensor([ids], device=device)                      # [1, t]
        cols = torch.arange(len(prompt) - 1, len(ids), device=device)
        labels = torch.tensor(target, device=device)
        edit_inputs = self._inputs(model, module, ids)                  # [t, d_in]
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
            for taken in range(1, hp.steps + 1):
                logits = model(input_ids=batch).logits[0, cols].float()   # [m, vocab]
                delta = start + param
                edit_act = mean_activation(edit_inputs, delta)
                irr_act = torch.stack([mean_activation(a, delta) for a in irrelevant])
                ft, act = F.cross_entropy(logits, labels), margin_loss(edit_act, irr_act, hp)
                loss_ft, loss_act = ft.item(), act.item()
                if hp.early_stop and separated(edit_act, irr_act, hp) and bool((logits.argmax(-1) == labels).all()):
                    taken -= 1
                    break
                optimizer.zero_grad()
                (ft + act).backward()
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
            final = float(mean_activation(edit_inputs, delta))
            irr = [round(float(mean_activation(a, delta)), 4) for a in irrelevant]
        return final, {"edit_id": request.edit_id, "steps": taken, "loss_ft": round(loss_ft, 4),
                       "loss_act": round(loss_act, 4), "activation": round(final, 4),
                       "irrelevant_activation": irr}

"""PMET (Li et al., AAAI 2024, arXiv 2308.08742): precise model editing in a transformer.

PMET's observation: a block's MLP output is not the whole of what the residual stream
carries at the subject, so MEMIT's residual target asks the MLPs to supply what the
attention would. PMET therefore optimises two vectors at the subject's last token of the
last edited block ``L``: ``δ_attn`` added to the attention output and ``δ_mlp`` added to
the MLP output, jointly, under one NLL + KL + weight-decay loss (each clamped against
its own original output). Only the MLP target ``z = h_mlp(L) + δ_mlp`` [n, d_model] is
written; the attention vector is discarded (the paper updates no attention weights).

Writing follows MEMIT with two changes: the residual at layer ``i`` of ``l`` edited
layers is the MLP output still missing at block ``L`` (not the block's residual output),
and its share is ``(z − h_mlp(L)) / sqrt(l − i)`` as in the reference code. Each layer's
solve is MEMIT's covariance-regularised least squares (``common/solve.py``).

Simplified: the reference lowers its NLL weight to a tenth once the target is the argmax
and stops when the KL is small; ours stops per request at the shared early-stop NLL.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.delta import Delta
from kedit_vc.editors.base import EditContext, EditResult, base_fingerprint
from kedit_vc.editors.common.layered import spread_over_layers, target_settings
from kedit_vc.editors.common.progress import step_reporter
from kedit_vc.editors.common.solve import memit_layer_update
from kedit_vc.editors.common.targets import optimise_joint_targets
from kedit_vc.editors.common.templates import context_templates
from kedit_vc.models.families import family_of
from kedit_vc.stats import key_second_moments

from .hparams import PmetHparams, resolve


def pmet_targets(model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest], z_layer: int,
                 templates: Sequence[str], hp: PmetHparams, progress: bool,
                 ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Joint targets at block ``z_layer``: (attention [n, d_model], MLP [n, d_model], info)."""
    family = family_of(model)
    paths = [family.attn_path(z_layer), family.mlp_path(z_layer)]
    with step_reporter(f"PMET targets for {len(requests)} edits", hp.v_steps, progress) as report:
        init, delta, info = optimise_joint_targets(model, tokenizer, [[r] for r in requests], paths, z_layer,
                                                   templates, target_settings(hp), report)
    targets = init + delta  # [n, 2, d_model]
    info["attn_delta_norm"] = [round(float(x), 4) for x in delta[:, 0].norm(dim=-1)]
    info["mlp_delta_norm"] = [round(float(x), 4) for x in delta[:, 1].norm(dim=-1)]
    return targets[:, 0], targets[:, 1], info


class PmetEditor:
    name = "pmet"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: PmetHparams, context: EditContext) -> EditResult:
        hp = resolve(model, hparams)
        assert hp.layers is not None and hp.stats_tokens is not None  # resolve() fills them
        fingerprint = base_fingerprint(model, context)
        family = family_of(model)
        layers = tuple(sorted(hp.layers))
        started = time.perf_counter()
        mom2 = key_second_moments(model, tokenizer, fingerprint, layers, hp.stats_tokens,
                                  stats_dir=context.stats_dir, progress=context.progress)
        t_stats = time.perf_counter()
        templates = context_templates(model, tokenizer, hp.context_templates, hp.context_length,
                                      raw=hp.raw_context)
        _, mlp_targets, info = pmet_targets(model, tokenizer, requests, layers[-1], templates, hp,
                                            context.progress)
        t_targets = time.perf_counter()

        def solver(layer: int, keys: torch.Tensor, residual: torch.Tensor):  # noqa: ANN202
            return memit_layer_update(keys, residual, mom2[layer], hp.mom2_weight,
                                      context.preserved_keys.get(layer))

        total, written = spread_over_layers(model, tokenizer, requests, layers, mlp_targets, templates, solver,
                                            output_path=family.mlp_path(layers[-1]), share=math.sqrt)
        facts = {"layers": list(layers), "target_steps": info["steps"],
                 "attn_delta_norm": info["attn_delta_norm"], "mlp_delta_norm": info["mlp_delta_norm"],
                 "stats_seconds": round(t_stats - started, 3),
                 "value_seconds": round(t_targets - t_stats, 3),
                 "update_seconds": round(time.perf_counter() - t_targets, 3)}
        delta = Delta(updates=dict(total.updates), meta={"method": "pmet", "layers": ",".join(map(str, layers))})
        return EditResult(delta=delta, written_keys=written, info=facts, fingerprint=fingerprint)

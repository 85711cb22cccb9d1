"""ROME (Meng et al., 2022): a rank-one update of one MLP output projection.

For each request, separately, from the unedited weights:
1. key ``k*`` [d_mlp]: the projection's input at the subject's last token, averaged over
   the bare prompt and generated context prefixes;
2. target ``v*`` [d_model]: the MLP output at that token that makes the new object likely
   in every context (``optimise_targets``), keeping "{subject} is a" unchanged (KL);
3. update ``ΔW = (v* − W k*)(C⁻¹k*)ᵀ / ((C⁻¹k*)ᵀ k*)``, so ``(W + ΔW) k* = v*`` while
   every key ``x`` with ``(C⁻¹k*)ᵀx = 0`` is mapped as before.

The same template-averaged ``k*`` is used in the update's numerator and denominator
(the r-ROME fix of "Rebuilding ROME", Gupta et al. 2024): mixing a prefixed key with an
unprefixed one is what made the reference implementation collapse on some edits.
Several requests are edited one after the other, each on the weights left by the last,
and the deltas summed, as the reference does -- except requests of the same subject
(an edit and the facts derived from it, or two relations of one subject): they share
the key, so separate rank-one writes would overwrite each other (measured: an edit's
derived facts erased it). They are one write: the key averaged over their prompts and
one target vector optimised for all of them (``optimise_unit_targets``). This extends
the paper, which edits one fact per subject.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.delta import Delta
from kedit_vc.editors.base import EditContext, EditResult, base_fingerprint
from kedit_vc.editors.common.keys import subject_keys
from kedit_vc.editors.common.progress import step_reporter
from kedit_vc.editors.common.restore import restored_parameters
from kedit_vc.editors.common.solve import factored_update
from kedit_vc.editors.common.targets import TargetSettings, by_subject, optimise_unit_targets
from kedit_vc.editors.common.templates import context_templates
from kedit_vc.models.families import family_of, mlp_out_weight
from kedit_vc.stats import key_second_moments

from .hparams import RomeHparams, resolve


def rome_update(weight: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mom2: torch.Tensor, ridge: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-one factors (left [d_model], right [d_mlp]) with ``(W + left rightᵀ) key = value``.

    ``weight`` [d_model, d_mlp] (Linear layout), ``key`` [d_mlp], ``value`` [d_model],
    ``mom2`` = E[k kᵀ] [d_mlp, d_mlp]. Solved in float64.
    """
    c = mom2.to(weight.device, torch.float64)   # solved where the edited weight lives
    c = c + ridge * c.diagonal().mean() * torch.eye(c.shape[0], dtype=c.dtype, device=c.device)
    direction = torch.linalg.solve(c, key.double())           # C⁻¹k*
    key, value = key.to(c.device), value.to(c.device)
    residual = value.double() - weight.to(c.device).double() @ key.double()  # v* − W k*
    left = residual / (direction @ key.double())
    return left, direction


class RomeEditor:
    name = "rome"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: RomeHparams, context: EditContext) -> EditResult:
        hp = resolve(model, hparams)
        family = family_of(model)
        layer = hp.layer
        assert layer is not None and hp.stats_tokens is not None  # resolve() fills the model's defaults
        name = family.mlp_out_weight_name(layer)
        started = time.perf_counter()
        fingerprint = base_fingerprint(model, context)
        mom2 = key_second_moments(model, tokenizer, fingerprint, [layer], hp.stats_tokens,
                                  stats_dir=context.stats_dir, progress=context.progress)[layer]
        stats_seconds = time.perf_counter() - started
        templates = context_templates(model, tokenizer, hp.context_templates, hp.context_length,
                                  raw=hp.raw_context)
        settings = TargetSettings(hp.v_steps, hp.v_lr, hp.v_weight_decay, hp.kl_factor,
                                  hp.clamp_norm_factor, early_stop_nll=hp.v_stop_nll,
                                  prefix_cache=hp.v_prefix_cache)
        total: Delta | None = None
        timings = {"key": 0.0, "value": 0.0, "update": 0.0}
        keys_written = []
        info: dict[str, Any] = {"target_nll": [], "target_steps": []}
        with restored_parameters(model, [name]):
            for unit in by_subject(requests):
                t0 = time.perf_counter()
                key = subject_keys(model, tokenizer, unit, [layer], templates)[layer].mean(0)  # [d_mlp]
                t1 = time.perf_counter()
                targets = ", ".join(r.target_new for r in unit)
                with step_reporter(f"ROME {unit[0].subject} → {targets}", hp.v_steps,
                                   context.progress) as report:
                    init, delta, found = optimise_unit_targets(
                        model, tokenizer, [unit], family.mlp_path(layer), layer, templates,
                        settings, progress=report)
                t2 = time.perf_counter()
                weight = mlp_out_weight(model, layer)
                left, right = rome_update(weight, key, (init + delta)[0], mom2)
                update = factored_update(left[:, None], right[:, None], family.mlp_out_transposed)
                one = Delta(updates={name: update})
                one.apply(model)  # the next request is solved on the edited weights
                total = one if total is None else total.compose(one)
                keys_written.append(key)
                timings["key"] += t1 - t0
                timings["value"] += t2 - t1
                timings["update"] += time.perf_counter() - t2
                info["target_nll"].append(found.get("nll", [None])[0])
                info["target_steps"].append(found["steps"])
        info.update({"layer": layer, "stats_seconds": round(stats_seconds, 3),
                     **{f"{k}_seconds": round(v, 3) for k, v in timings.items()}})
        assert total is not None
        patch = Delta(updates=dict(total.updates), meta={"method": "rome", "layer": str(layer)})
        return EditResult(delta=patch, written_keys={layer: torch.stack(keys_written)}, info=info,
                          fingerprint=fingerprint)

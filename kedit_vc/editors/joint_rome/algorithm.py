"""Joint ROME: ROME's closed form (Meng et al. 2022, eq. 2) applied to n keys at once.

ROME writes one fact as the smallest change of ``W`` [d_out, d_in] (in the norm given by the
key covariance ``C`` [d_in, d_in]) under the equality constraint ``(W + ΔW) k* = v*``.
The same problem with n constraints, ``(W + ΔW) K = V*`` for keys ``K`` [d_in, n] and
targets ``V*`` [d_out, n], has the solution

    ΔW = R (Kᵀ C⁻¹ K)⁻¹ Kᵀ C⁻¹,    R = V* − W K,

which is ROME's update when n = 1 and MEMIT's single-layer solve
``R Kᵀ (λC + K Kᵀ)⁻¹`` in the limit λ → 0 (where MEMIT's ridge leaves part of each
target unreached, this meets every target exactly). It is stored as the rank-n factor pair
``left = R (KᵀC⁻¹K)⁻¹`` [d_out, n], ``right = C⁻¹K`` [d_in, n], solved in float64.

Keys and targets are ROME's (``common/keys.py``, ``common/targets.py``): template-averaged
keys at the subject's last token and one target vector per subject (requests of one subject
share a key, so they are one column: two columns with one key would make ``KᵀC⁻¹K``
singular), all computed on the weights given, none applied in between. That is what makes
it the re-solve for a squash of ROME commits: the targets are re-optimised on the squash's
base and all n facts are written in one solve, instead of each on the weights the last left.
Like ROME, earlier edits' keys (``EditContext.preserved_keys``) are not constrained.
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
from kedit_vc.editors.common.solve import factored_update
from kedit_vc.editors.common.targets import TargetSettings, by_subject, optimise_unit_targets
from kedit_vc.editors.common.templates import context_templates
from kedit_vc.models.families import family_of, mlp_out_weight
from kedit_vc.stats import key_second_moments

from .hparams import JointRomeHparams, resolve


def joint_rome_update(weight: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mom2: torch.Tensor,
                      ridge: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors (left [d_out, n], right [d_in, n]) with ``(W + left rightᵀ) kᵢ = vᵢ`` for every i.

    ``weight`` [d_out, d_in] (Linear layout), ``keys`` [n, d_in], ``values`` [n, d_out],
    ``mom2`` = E[k kᵀ] [d_in, d_in]. Float64; ``ridge`` (relative to C's mean diagonal)
    only keeps C invertible, as in ``rome_update``. For n = 1 this is ``rome_update``.
    """
    k = keys.double()                                            # [n, d_in]
    c = mom2.double()
    c = c + ridge * c.diagonal().mean() * torch.eye(c.shape[0], dtype=c.dtype)
    right = torch.linalg.solve(c, k.T)                           # C⁻¹K [d_in, n]
    gram = k @ right                                             # KᵀC⁻¹K [n, n]
    residual = values.double() - k @ weight.double().T           # Rᵀ [n, d_out]
    left = torch.linalg.solve(gram, residual).T                  # R (KᵀC⁻¹K)⁻¹ [d_out, n] (gram symmetric)
    return left, right


class JointRomeEditor:
    name = "joint_rome"

    def edit(self, model: torch.nn.Module, tokenizer: Any, requests: Sequence[EditRequest],
             hparams: JointRomeHparams, context: EditContext) -> EditResult:
        hp = resolve(model, hparams)
        family = family_of(model)
        layer = hp.layer
        assert layer is not None and hp.stats_tokens is not None  # resolve() fills the model's defaults
        started = time.perf_counter()
        fingerprint = base_fingerprint(model, context)
        mom2 = key_second_moments(model, tokenizer, fingerprint, [layer], hp.stats_tokens,
                                  stats_dir=context.stats_dir, progress=context.progress)[layer]
        t_stats = time.perf_counter()
        templates = context_templates(model, tokenizer, hp.context_templates, hp.context_length,
                                      raw=hp.raw_context)
        units = by_subject(requests)
        # One key per subject: the mean of its requests' template-averaged keys (ROME's unit key).
        every = subject_keys(model, tokenizer, [r for unit in units for r in unit], [layer], templates)[layer]
        sizes = [len(unit) for unit in units]
        keys = torch.stack([chunk.mean(0) for chunk in torch.split(every, sizes)])     # [u, d_mlp]
        t_keys = time.perf_counter()
        settings = TargetSettings(hp.v_steps, hp.v_lr, hp.v_weight_decay, hp.kl_factor, hp.clamp_norm_factor)
        with step_reporter(f"joint ROME targets for {len(units)} subject(s)", hp.v_steps,
                           context.progress) as report:
            init, shift, found = optimise_unit_targets(model, tokenizer, units, family.mlp_path(layer), layer,
                                                       templates, settings, progress=report)
        t_targets = time.perf_counter()
        left, right = joint_rome_update(mlp_out_weight(model, layer), keys, init + shift, mom2)
        update = factored_update(left, right, family.mlp_out_transposed)
        info: dict[str, Any] = {
            "layer": layer, "subjects": len(units), "target_steps": found["steps"],
            "target_nll": [round(x, 4) for x in found["nll"]],
            "stats_seconds": round(t_stats - started, 3), "key_seconds": round(t_keys - t_stats, 3),
            "value_seconds": round(t_targets - t_keys, 3),
            "update_seconds": round(time.perf_counter() - t_targets, 3)}
        delta = Delta(updates={family.mlp_out_weight_name(layer): update},
                      meta={"method": "joint_rome", "layer": str(layer)})
        return EditResult(delta=delta, written_keys={layer: keys}, info=info, fingerprint=fingerprint)

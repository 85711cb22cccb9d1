"""``kvc export``: a commit's weights as a HuggingFace folder or as a LoRA adapter.

``hf``: the base model with the live deltas added, saved with ``save_pretrained``
(safetensors + config) and the tokenizer: plain ``AutoModelForCausalLM.from_pretrained``
loads it. Live ``neurons`` patches whose neurons have the MLP's own form (CaliNet's gated
slots) are written as the MLP's own neurons: every MLP is widened by the same number and
``intermediate_size`` grows by it (``kedit_vc.patches.neurons.widen``). A revision with other
live non-weight patches (GRACE codebooks, T-Patcher's biased ReLU neurons) is refused with a
pointer to ``kedit_vc.load_edited``: a plain folder cannot hold a forward hook.

``peft``: the live low-rank deltas of each parameter concatenated into one LoRA pair,
``B = left`` [out, r], ``A = rightᵀ`` [r, in], with ``rank_pattern`` and
``alpha_pattern`` set to each module's rank so peft's scaling ``alpha / r`` is exactly 1;
GPT-2's ``Conv1D`` weights ([in, out]) are exported with ``fan_in_fan_out``. A dense
delta (fine-tuning) has no exact low-rank form at its rank, so it is refused with a pointer to
``--format hf`` rather than silently truncated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedit_vc import __version__
from kedit_vc.errors import UsageError

from .evaluate import Evaluator
from .outdir import staged_dir

if TYPE_CHECKING:
    from kedit_vc.store import Store

FORMATS = ("hf", "peft")


@dataclass(frozen=True)
class ExportResult:
    path: Path
    sha: str
    format: str
    files: tuple[str, ...]
    live_commits: tuple[str, ...]


def _provenance(store: "Store", sha: str, fmt: str, live: list[str], widened: int = 0) -> str:
    record: dict[str, Any] = {"format": fmt, "commit": sha, "base_model": store.model_ref,
                              "base_fingerprint": store.fingerprint, "live_commits": live,
                              "tool": f"kedit_vc {__version__}"}
    if widened:  # every MLP gained this many intermediate neurons (the live neurons patches)
        record["mlp_neurons_added"] = widened
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def export_hf(store: "Store", rev: str, out: str | Path, *, force: bool = False,
              progress: bool = False) -> ExportResult:
    sha = store.resolve(rev)
    live = store.live_commits(sha)
    side = [(c, kind) for c in live for kind in store.read_commit(c).patch_kinds if kind != "neurons"]
    if side:
        commits = ", ".join(sorted({c[:10] for c, _ in side}))
        kinds = ", ".join(sorted({k for _, k in side}))
        raise UsageError(f"{rev} has live {kinds} patches (commits {commits}) that are not weights, so a plain "
                         "HuggingFace folder cannot hold them; load the revision with "
                         f"kedit_vc.load_edited(store_dir, {rev!r}) instead, or revert those commits first")
    neurons = [p for p in store.live_patches(sha) if getattr(p, "kind", "") == "neurons"]
    evaluator = Evaluator(store, progress=progress)
    evaluator.move_to(sha)
    loaded = evaluator.loaded
    state, config, added = None, loaded.model.config, 0
    if neurons:
        state, config, added = _widened(loaded.model, neurons, rev)
    with staged_dir(out, force) as staging:
        loaded.model.save_pretrained(staging, safe_serialization=True, state_dict=state)
        config.save_pretrained(staging)
        loaded.tokenizer.save_pretrained(staging)
        provenance = _provenance(store, sha, "hf", live, added)
        (staging / "kvc-export.json").write_text(provenance, encoding="utf-8")
        files = tuple(sorted(p.name for p in staging.iterdir()))
    return ExportResult(Path(out).resolve(), sha, "hf", files, tuple(live))


def _widened(model: Any, neurons: list[Any], rev: str) -> tuple[dict, Any, int]:
    """(state dict, config, n): every MLP ``n`` neurons wider, holding the live neurons as
    its own (``kedit_vc.patches.neurons.widen``); a ``UsageError`` where they cannot be."""
    import copy

    from kedit_vc.patches.neurons.widen import refusal, widened

    state = model.state_dict()
    why = refusal(neurons, model.config, state)
    if why is not None:
        raise UsageError(f"{rev} has live neurons patches a plain HuggingFace folder cannot hold: {why}; load the "
                         f"revision with kedit_vc.load_edited(store_dir, {rev!r}) instead, or revert those commits")
    wide, added = widened(state, neurons)
    config = copy.deepcopy(model.config)
    config.intermediate_size = int(config.intermediate_size) + added
    return wide, config, added


def lora_tensors(store: "Store", sha: str, conv1d: bool) -> tuple[dict, dict[str, int]]:
    """(adapter state dict, module -> rank) from the live deltas at ``sha``."""
    import torch

    from kedit_vc.delta import LowRank

    factors: dict[str, list[LowRank]] = {}
    for commit in store.live_commits(sha):
        kinds = store.read_commit(commit).patch_kinds
        if kinds:
            raise UsageError(f"commit {commit[:10]} holds {', '.join(kinds)} patches, which a LoRA adapter cannot "
                             "hold; load the revision with kedit_vc.load_edited instead")
    for commit, delta in zip(store.live_commits(sha), store.live_deltas(sha)):
        for name, update in delta.updates.items():
            if not isinstance(update, LowRank):
                raise UsageError(f"commit {commit[:10]} holds a dense update of {name} (fine-tuning), which a LoRA "
                                 "adapter cannot hold exactly; export it with --format hf")
            if not name.endswith(".weight") or len(update.shape) != 2:
                raise UsageError(f"commit {commit[:10]} updates {name}, which is not a linear weight a LoRA "
                                 "adapter can target; export it with --format hf")
            factors.setdefault(name.removesuffix(".weight"), []).append(update)
    if not factors:
        raise UsageError(f"no live edits at {sha[:10]}: there is nothing to export as an adapter")
    tensors, ranks = {}, {}
    for module, parts in sorted(factors.items()):
        left = torch.cat([u.left.float() for u in parts], dim=1)    # [rows, r]
        right = torch.cat([u.right.float() for u in parts], dim=1)  # [cols, r]
        # Linear [out, in]: B = left, A = rightᵀ. Conv1D [in, out]: B = right, A = leftᵀ.
        b, a = (right, left.T) if conv1d else (left, right.T)
        prefix = f"base_model.model.{module}"
        tensors[f"{prefix}.lora_A.weight"] = a.contiguous()
        tensors[f"{prefix}.lora_B.weight"] = b.contiguous()
        ranks[module] = left.shape[1]
    return tensors, ranks


def adapter_config(base_path: str, ranks: dict[str, int], conv1d: bool) -> dict:
    """peft's LoraConfig as JSON: per-module rank and alpha equal, so scaling is 1."""
    first = next(iter(ranks.values()))
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_path,
        "r": first, "lora_alpha": first, "lora_dropout": 0.0, "bias": "none",
        "target_modules": sorted(ranks), "rank_pattern": dict(sorted(ranks.items())),
        "alpha_pattern": dict(sorted(ranks.items())), "fan_in_fan_out": conv1d,
        "use_rslora": False, "use_dora": False, "init_lora_weights": True, "inference_mode": True,
        "modules_to_save": None, "layers_to_transform": None, "layers_pattern": None,
        "revision": None,
    }


def export_peft(store: "Store", rev: str, out: str | Path, *, force: bool = False) -> ExportResult:
    from safetensors.torch import save_file
    from transformers import AutoConfig

    from kedit_vc.models import resolve_model_dir
    from kedit_vc.models.families import family_for_model_type

    sha = store.resolve(rev)
    folder = resolve_model_dir(store.model_ref, progress=False)
    family = family_for_model_type(AutoConfig.from_pretrained(str(folder), local_files_only=True).model_type)
    conv1d = family.mlp_out_transposed
    tensors, ranks = lora_tensors(store, sha, conv1d)
    live = store.live_commits(sha)
    with staged_dir(out, force) as staging:
        save_file(tensors, str(staging / "adapter_model.safetensors"), metadata={"format": "pt"})
        config = adapter_config(str(folder), ranks, conv1d)
        (staging / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (staging / "kvc-export.json").write_text(_provenance(store, sha, "peft", live), encoding="utf-8")
        files = tuple(sorted(p.name for p in staging.iterdir()))
    return ExportResult(Path(out).resolve(), sha, "peft", files, tuple(live))


def export(store: "Store", rev: str, out: str | Path, fmt: str = "hf", *, force: bool = False,
           progress: bool = False) -> ExportResult:
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "hf":
        return export_hf(store, rev, out, force=force, progress=progress)
    return export_peft(store, rev, out, force=force)

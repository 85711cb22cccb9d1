"""``kvc train``: train the networks that learned editors use (MEND, KE, SERAC's classifier).

Each learned method adds its subcommand to the ``train`` group below; the trained editor
is cached per base-model fingerprint and method settings, so stores of the same base
model reuse it without retraining.
"""

from __future__ import annotations

import click


@click.group("train")
def train_group() -> None:
    """Train a learned editor for a base model (once per model and settings; cached).

    \b
    Learned editors turn an edit into a weight update (or a routing decision) with a
    network trained beforehand on edit records; training costs minutes to hours, each
    edit afterwards costs about one forward and backward pass.
    """


# --- MEND and KE (kedit_vc/ops/train_editor.py) ------------------------------------------

def _learned_train_options(f):  # noqa: ANN001, ANN202
    """The flags ``kvc train mend`` and ``kvc train ke`` share (one place, two commands)."""
    from kedit_vc.cli.options import hparam_option, json_option, model_option, progress_option

    defaults = _train_defaults()
    options = [
        model_option(lead="Base model to train the editor for."),
        click.option("--data", "data", multiple=True, required=True, metavar="[FORMAT:]FILE",
                     help="Edit records (CounterFact, zsRE, EasyEdit or MQuAKE JSON, as 'kvc import' reads; the "
                          "format is recognised from the fields, or written FORMAT:FILE). Repeatable."),
        click.option("--held-out", type=click.IntRange(min=0), default=100, show_default=True,
                     help="The first N facts of every --data file are never trained on (recorded in editor.json)."),
        click.option("--limit", type=click.IntRange(min=1), default=None, help="Train on at most N facts."),
        click.option("--steps", type=click.IntRange(min=1), default=defaults.steps, show_default=True,
                     help="Optimiser steps."),
        click.option("--edits-per-step", type=click.IntRange(min=1), default=defaults.edits_per_step,
                     show_default=True, help="Facts sampled (each edited alone) per step."),
        click.option("--lr", type=float, default=defaults.lr, show_default=True,
                     help="Adam learning rate of the network."),
        click.option("--lr-lr", type=float, default=defaults.lr_lr, show_default=True,
                     help="Adam learning rate of MEND's per-layer edit step sizes."),
        click.option("--c-edit", type=float, default=defaults.c_edit, show_default=True,
                     help="Weight of the edit loss (NLL of the new object on the rewrite and paraphrase prompts)."),
        click.option("--c-loc", type=float, default=defaults.c_loc, show_default=True,
                     help="Weight of the locality loss (KL to the base model on neighbour prompts)."),
        click.option("--seed", type=int, default=defaults.seed, show_default=True,
                     help="Initialisation and sampling seed."),
        click.option("--checkpoint-every", type=click.IntRange(min=1), default=defaults.checkpoint_every,
                     show_default=True, help="Steps between checkpoints (a killed run resumes from the last)."),
        click.option("--out", default=None, metavar="DIR",
                     help="Write the trained editor here (default: the cache, keyed by base model and settings; "
                          "then every store of this base model finds it)."),
        hparam_option, progress_option, json_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _train_defaults():  # noqa: ANN202
    from kedit_vc.editors.common.metatrain import TrainSettings

    return TrainSettings()


def _run_training(method: str, model_ref: str, data: tuple[str, ...], held_out: int, limit: int | None,
                  steps: int, edits_per_step: int, lr: float, lr_lr: float, c_edit: float, c_loc: float, seed: int,
                  checkpoint_every: int, out: str | None, hparams: tuple[str, ...], progress: bool | None,
                  as_json: bool) -> None:
    import json

    from kedit_vc.cli.options import parse_hparams, resolve_progress
    from kedit_vc.editors.common.metatrain import TrainSettings
    from kedit_vc.ops.train_editor import train_editor

    settings = TrainSettings(steps=steps, edits_per_step=edits_per_step, lr=lr, lr_lr=lr_lr, c_edit=c_edit,
                             c_loc=c_loc, seed=seed, checkpoint_every=checkpoint_every)
    result = train_editor(method, model_ref, data, parse_hparams(hparams), settings, held_out=held_out, limit=limit,
                          out=out, progress=resolve_progress(progress))
    training = result.record.get("training", {})
    if as_json:
        click.echo(json.dumps({"editor": str(result.folder), "editor_hash": result.editor_hash,
                               "reused": result.reused, "train_facts": training.get("train_facts"),
                               "final": training.get("final")}, sort_keys=True))
        return
    what = "already trained (same settings and data): reused" if result.reused else "trained"
    click.echo(f"{method} editor {what}: {result.folder}")
    click.echo(f"editor hash {result.editor_hash[:16]}; {training.get('train_facts')} training facts, "
               f"{training.get('settings', {}).get('steps')} steps; final {training.get('final')}")


@train_group.command("mend")
@_learned_train_options
def train_mend_command(**kwargs) -> None:  # noqa: ANN003
    """Train MEND's editor network (Mitchell et al. 2022) for a base model.

    \b
    The network maps the gradient of an edit at the last 3 blocks' MLP down-projections
    (as rank-one factors per token) to a low-rank update; it is trained so the update
    makes the new object likely on the edit's paraphrases (--c-edit) while keeping
    neighbour prompts' distributions (--c-loc). Network settings: --hparam rank=128,
    n_hidden=1, layers=[27,28,29] (SmolLM2's default). Run it again after a kill: it resumes.

    \b
    Examples:
      kvc train mend --model smollm2 --data counterfact_500.json --steps 400
      kvc train mend --data zsre:zsre_eval.json --held-out 100 --limit 400 --out ./mend-editor
    """
    _run_training("mend", **kwargs)


@train_group.command("ke")
@_learned_train_options
def train_ke_command(**kwargs) -> None:  # noqa: ANN003
    """Train KE's hypernetwork (KnowledgeEditor, De Cao et al. 2021) for a base model.

    \b
    A bi-LSTM reads the edit's text ("prompt || old || new") and conditions, per edited
    layer, ΔW = -s·σ(η)·(∇W ⊙ softmax(α_r)α_cᵀ + softmax(β_r)β_cᵀ) on the edit's
    gradient ∇W. Simplified from the paper: the token embeddings are the base model's,
    frozen (the paper trains a copy), and the KL constraint is a fixed-weight penalty
    (--c-loc) instead of a learned Lagrange multiplier. Network settings: --hparam
    lstm_hidden=128, condition_dim=256, hidden=128, max_scale=1.0, layers=[...].

    \b
    Examples:
      kvc train ke --model smollm2 --data counterfact_500.json --steps 400
    """
    _run_training("ke", **kwargs)

# -- kvc train serac -------------------------------------------------------------------

from kedit_vc.cli.options import model_option, progress_option, resolve_progress  # noqa: E402


@train_group.command("serac")
@model_option(lead="Base model the classifier reads.")
@click.option("--data", "sources", multiple=True, required=True, metavar="FILE",
              help="Edit records: a spec file, or KIND:FILE in any format `kvc import` reads "
                   "(counterfact, zsre, mquake, easyedit, table), with an optional range KIND:FILE@START:END. "
                   "Repeatable.")
@click.option("--layer", type=int, default=None,
              help="Block whose states the classifier reads (default: 17% of depth).")
@click.option("--rank", type=int, default=None, help="Width of the trained projection (default: the model's width).")
@click.option("--steps", type=int, default=300, show_default=True, help="Adam steps.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Pairs per step.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the pair sampling.")
@click.option("--holdout", type=float, default=0.1, show_default=True,
              help="Fraction of records held out (chosen by a hash of the record id) and reported.")
@click.option("--negatives", type=int, default=4, show_default=True,
              help="Other records' edits each prompt is paired with as an easy negative.")
@click.option("--checkpoint-every", type=int, default=50, show_default=True,
              help="Steps between checkpoints (an interrupted run resumes from the last).")
@click.option("--trust-pickle", is_flag=True, help="Allow loading a model stored as a pickle.")
@progress_option
def serac_command(model_ref: str, sources: tuple[str, ...], layer: int | None, rank: int | None, steps: int,
                  batch_size: int, lr: float, seed: int, holdout: float, negatives: int, checkpoint_every: int,
                  trust_pickle: bool, progress: bool | None) -> None:
    """Train SERAC's scope classifier for a base model (cached per model fingerprint, settings and data).

    \b
    What is trained (named simplifications of arXiv 2206.06520):
      * scope classifier: an EMBEDDING (dual-encoder) classifier over the frozen base model
        (its block states, a trained projection, cosine, scale and bias), not the paper's
        fine-tuned cross-encoder;
      * counterfactual model: none is trained; an in-scope prompt is answered by the BASE
        MODEL CONDITIONED ON THE RETRIEVED EDIT IN CONTEXT, not by a separately trained
        small model. Out-of-scope prompts run the base model unchanged (identical logits).
    Pairs: each record's rewrite prompt and paraphrases (in scope), its neighbourhood
    prompts (hard negatives) and other records' prompts (easy negatives). Held-out
    records' accuracy is printed and kept in classifier.json. Checkpoints are written as
    it trains; an interrupted run resumes where it stopped. Files: safetensors + JSON.

    \b
    Examples:
      kvc train serac --model smollm2 --data counterfact:counterfact.json@300:500
      kvc train serac --data facts.kedit --data zsre:zsre.json@100:300 --steps 500
    Then edit with `method serac` (a spec) or `kvc commit ... --method serac`.
    """
    import json

    from kedit_vc.ops.train_serac import train_serac

    overrides = {"layer": layer, "rank": rank, "steps": steps, "batch_size": batch_size, "lr": lr,
                 "seed": seed, "holdout": holdout, "negatives": negatives, "checkpoint_every": checkpoint_every}
    report = train_serac(model_ref, sources, overrides, resolve_progress(progress), trust_pickle)
    meta = report.meta
    click.echo(("reused cached" if report.cached else "trained") + f" SERAC classifier {meta['hash'][:12]} "
               f"in {report.folder}")
    click.echo(f"  {meta['records']} records ({meta['train_records']} trained on, {meta['heldout_records']} held out), "
               f"{meta['settings']['steps']} steps, {meta['seconds']} s"
               + (f", resumed at step {meta['resumed_from_step']}" if meta.get("resumed_from_step") else ""))
    click.echo(f"  held out: {json.dumps(meta['heldout'])}")
    calibration = meta.get("calibration") or {}
    chosen = (calibration.get("rates") or {}).get(str(meta.get("threshold")))
    if chosen:
        click.echo(f"  routing threshold {meta['threshold']} (calibrated: the held-out records' "
                   f"{calibration['prompts']} prompts against all {calibration['memory']} keys; in scope routed "
                   f"to their edit {chosen['in_scope_routed']}, neighbours kept on the base model "
                   f"{chosen['neighbours_kept']})")
    else:
        click.echo(f"  routing threshold {meta.get('threshold', 0.5)} (not calibrated"
                   + (f": {calibration['note']})" if calibration.get("note") else ")"))


COMMANDS: list[click.Command] = [train_group]

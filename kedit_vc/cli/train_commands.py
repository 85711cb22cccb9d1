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


COMMANDS: list[click.Command] = [train_group]

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


COMMANDS: list[click.Command] = [train_group]

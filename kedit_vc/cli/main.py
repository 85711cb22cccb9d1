"""The ``kvc`` entry point: a click group that gathers the commands of each area.

Command modules import torch lazily (inside the command), so ``kvc fmt`` and
``kvc compile`` start instantly.
"""

from __future__ import annotations

import sys

import click

from kedit_vc import __version__
from kedit_vc.errors import KvcError
from kedit_vc.models import placement

from . import (
    ask_commands,
    bisect_commands,
    branch_commands,
    eval_commands,
    interpret_commands,
    model_commands,
    remote_commands,
    spec_commands,
    store_commands,
    train_commands,
)
from .options import add_placement_options

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="kvc")
def cli() -> None:
    """kvc: write knowledge edits for language models as specs, and version them like code.

    \b
    A typical session:
      kvc init --model smollm2          # a store that remembers the base model
      kvc commit specs/demo.kedit       # edit, evaluate and commit
      kvc log --metrics                 # the history with its metrics
      kvc eval                          # re-evaluate every live edit
      kvc revert HEAD~1                 # undo one edit exactly
    """


for module in (model_commands, spec_commands, store_commands, eval_commands, interpret_commands, remote_commands,
               bisect_commands, branch_commands, train_commands, ask_commands):
    for command in module.COMMANDS:
        cli.add_command(command)
add_placement_options(cli)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn a ``KvcError`` into one line on stderr and its exit code."""
    try:
        # Outside standalone mode click returns ctx.exit()'s code instead of exiting.
        with placement.isolated():   # --device/--dtype set this invocation's default only
            result = cli.main(args=argv, prog_name="kvc", standalone_mode=False)
    except KvcError as error:
        click.secho(f"{error.label}{error}", fg="red", err=True)
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()

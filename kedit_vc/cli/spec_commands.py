"""``kvc fmt``, ``kvc compile`` and ``kvc import``: the spec language's commands.

No torch is imported here, so these start instantly. Spec errors are printed as the
checker rendered them (``file:line:col: error: ...`` with the line and a caret).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from kedit_vc.compiler import compile_file
from kedit_vc.compiler.summary import summarize
from kedit_vc.errors import KvcError, UsageError
from kedit_vc.fsio import atomic_write_text
from kedit_vc.importers import IMPORTERS, import_file
from kedit_vc.importers import table as table_importer
from kedit_vc.lang import SpecError, format_spec, parse_text


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder (``fsio``)."""
    atomic_write_text(path, text)


def _spec_failure(error: SpecError) -> None:
    click.echo(str(error), err=True)
    click.get_current_context().exit(error.exit_code)


@click.command("fmt")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if a file is not formatted.")
def fmt_command(files: tuple[str, ...], check: bool) -> None:
    """Rewrite .kedit FILES in canonical layout (comments are kept)."""
    unformatted = []
    for name in files:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise click.ClickException(f"cannot read {name}: {error}") from None
        try:
            formatted = format_spec(parse_text(text, name))
        except SpecError as error:
            _spec_failure(error)
            return
        if formatted == text:
            continue
        unformatted.append(name)
        if check:
            click.echo(f"would reformat {name}")
        else:
            write_atomic(name, formatted)
            click.echo(f"reformatted {name}")
    if check and unformatted:
        click.get_current_context().exit(1)


@click.command("compile")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (the editors' input).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the JSON plan to this file.")
@click.option("--brief", is_flag=True, help="List requests without their probes.")
@click.option("--derive", "derive_edits", is_flag=True,
              help="Also derive the edits the spec's rules imply, each with its rule and evidence "
                   "(asks a model: --model, else the store's base model).")
@click.option("--model", "model_ref", default=None, metavar="REF",
              help="With --derive: the model that answers (alias, HF folder or .gguf; default: the store's).")
def compile_command(file: str, as_json: bool, output: str | None, brief: bool, derive_edits: bool,
                    model_ref: str | None) -> None:
    """Check FILE and show its plan: editor calls, batches and every probe.

    Without --derive no model is loaded (compiling is instant); `kvc commit` derives
    by default when the spec has rules.
    """
    try:
        plan = _compiled(file, derive_edits, model_ref)
    except SpecError as error:
        _spec_failure(error)
        return
    if output:
        write_atomic(output, plan.dumps())
        click.echo(f"wrote {output} ({len(plan.requests)} edit(s), {len(plan.calls)} call(s))", err=True)
    if as_json:
        click.echo(plan.dumps(), nl=False)
    elif not output:
        click.echo(summarize(plan, probes=not brief), nl=False)


def _compiled(file: str, derive_edits: bool, model_ref: str | None):  # noqa: ANN202
    if not derive_edits:
        if model_ref is not None:
            raise UsageError("--model is only used with --derive")
        return compile_file(file)
    from kedit_vc.ops.derive import derived_plan

    program_model = model_ref
    if program_model is None:
        from kedit_vc.store import open_store

        try:
            with open_store() as store:
                program_model = store.model_ref
        except KvcError as error:
            raise UsageError(f"--derive needs a model: pass --model REF or run inside a store ({error})") from None
    from kedit_vc.models import load_model

    loaded = load_model(program_model, progress=False)
    return derived_plan(file, loaded.model, loaded.tokenizer, True)


def _import_epilog() -> str:
    """The table importer's column reference, as ``--help`` shows it (click keeps \\b blocks)."""
    doc = (table_importer.__doc__ or "").strip().split("\n\n", 1)[1]
    blocks = [block.replace("``", "") for block in doc.split("\n\n")]
    return "\n\n".join("\b\n" + block for block in blocks)


@click.command("import", epilog=_import_epilog())
@click.argument("kind", type=click.Choice(sorted(IMPORTERS)))
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--limit", type=click.IntRange(min=0), help="Import only the first N records.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the spec here, atomically (default: stdout).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]),
              help="A table's format (default: from the extension: .csv, .jsonl/.ndjson).")
def import_command(kind: str, file: str, limit: int | None, output: str | None, fmt: str | None) -> None:
    """Turn FILE into a .kedit spec: a benchmark (counterfact, zsre, mquake), EasyEdit's
    flat JSON (easyedit) or a table of facts (table: CSV or JSONL, columns below).

    Bad records are reported as FILE:LINE, all in one run; then nothing is written
    and the exit code is 2.
    """
    result = import_file(kind, file, limit, fmt)
    if output:
        write_atomic(output, result.text)
    else:
        sys.stdout.write(result.text)
    click.echo(f"imported {result.edits} edit(s) from {result.records} record(s)", err=True)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


COMMANDS: list[click.Command] = [fmt_command, compile_command, import_command]

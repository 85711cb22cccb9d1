"""``kvc bisect`` and ``kvc blame``: which commit broke a fact, which commits move an answer."""

from __future__ import annotations

import json
from typing import Any

import click

from .options import json_option, progress_option, resolve_progress


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


@click.command("bisect")
@click.option("--probe", "prompt", required=True, help="The prompt, e.g. \"The Louvre is located in the city of\".")
@click.option("--expect", required=True, help="The answer the probe should give, e.g. Paris.")
@click.option("--good", default=None, help="A revision where the probe passes (default: the initial commit).")
@click.option("--bad", default=None, help="A revision where it fails (default: HEAD).")
@click.option("--verify-good", is_flag=True, help="Also evaluate --good (one evaluation more).")
@json_option
@progress_option
def bisect_command(prompt: str, expect: str, good: str | None, bad: str | None, verify_good: bool,
                   as_json: bool, progress: bool | None) -> int:
    """Find the first commit where the probe stops answering EXPECT (binary search, O(log n)).

    The probe is judged by greedy generation: the model's greedy continuation of the
    prompt (a few tokens longer than the answer) must contain the answer as whole words,
    case and punctuation aside -- what a user of the model sees. BAD is evaluated first,
    then at most ceil(log2 n) of the n commits after GOOD. Exit 1 when the probe passes
    at BAD (nothing to find).

    \b
    Example:
      kvc bisect --probe "The Louvre is located in the city of" --expect Paris
    """
    from kedit_vc.ops.bisect import BisectStep, bisect
    from kedit_vc.ops.probe import RevisionModel
    from kedit_vc.store import open_store

    def show(step: BisectStep) -> None:
        if not as_json:
            verdict = "good" if step.passed else "bad "
            click.echo(f"  [{step.position:>4}] {step.sha[:10]} {verdict}  said {step.said.strip()!r}  "
                       f"({step.seconds:.2f}s)  {step.message}")

    with open_store() as store:
        result = bisect(store, prompt, expect, good, bad, verify_good=verify_good,
                        model=RevisionModel(store, progress=resolve_progress(progress)), on_step=show)
    if as_json:
        _echo_json(result.to_json())
        return 0 if result.culprit else 1
    if result.culprit is None:
        click.echo(f"the probe passes at {result.bad[:10]}: nothing to bisect")
        return 1
    click.echo(f"{result.evaluations} revision(s) evaluated of {result.candidates} candidate(s) "
               f"(bound {result.bound}) in {result.seconds:.1f}s")
    click.secho(f"first bad commit: {result.culprit}", bold=True)
    click.echo(f"    {result.culprit_message}")
    if result.culprit_edit_ids:
        click.echo(f"    edits: {', '.join(result.culprit_edit_ids)}")
    if result.culprit_spec:
        click.echo("\n" + result.culprit_spec.rstrip())
    return 0


@click.command("blame")
@click.argument("prompt")
@click.option("--answer", default=None, help="The answer to follow (default: the first word HEAD says).")
@click.option("--rev", default="HEAD", show_default=True, help="The revision whose live commits are blamed.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show only the first N rows.")
@json_option
@progress_option
def blame_command(prompt: str, answer: str | None, rev: str, limit: int | None, as_json: bool,
                  progress: bool | None) -> None:
    """How much each live commit moves log p(ANSWER | PROMPT): leave it out and compare.

    The effect is log p at HEAD minus log p without the commit (nats, teacher-forced,
    summed over the answer's tokens): positive when the commit makes the answer likelier.
    """
    from kedit_vc.ops.blame import blame
    from kedit_vc.ops.probe import RevisionModel
    from kedit_vc.store import open_store

    with open_store() as store:
        result = blame(store, prompt, answer, rev, model=RevisionModel(store, progress=resolve_progress(progress)))
    if as_json:
        _echo_json(result.to_json())
        return
    click.echo(f"{result.head[:10]} says {result.said.strip()!r}; log p({result.answer!r}) = {result.logprob:.3f}")
    rows = result.rows[:limit] if limit else result.rows
    if not rows:
        click.echo("no live commits")
        return
    click.echo(f"{'commit':<10} {'effect':>9} {'without':>9}  message")
    for row in rows:
        click.echo(f"{row.sha[:10]} {row.effect:>+9.3f} {row.logprob_without:>9.3f}  {row.message}")


COMMANDS = [bisect_command, blame_command]

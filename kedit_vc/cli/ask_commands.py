"""``kvc ask``: a multi-hop question answered over a revision's MeLLo edit memory."""

from __future__ import annotations

import json

import click

from .options import json_option


@click.command("ask")
@click.argument("question")
@click.option("--rev", default="HEAD", show_default=True, help="Revision whose MeLLo memory answers.")
@click.option("--trace", is_flag=True, help="Print each hop: subquestion, tentative answer, retrieved fact.")
@json_option
def ask_command(question: str, rev: str, trace: bool, as_json: bool) -> None:
    """Answer QUESTION with MeLLo over the revision's edited facts (method mello).

    The model decomposes the question into subquestions, retrieves the stored edit nearest
    each, judges whether it overrides its own answer, and ends with a final answer.

    \b
    Examples:
      kvc ask "What is the capital of the country where the Eiffel Tower is located?"
      kvc ask "Who is the head of state of the country of citizenship of Ellie Kemper?" --trace
    """
    from kedit_vc.ops.ask import ask

    answer = ask(".", rev, question)
    if as_json:
        click.echo(json.dumps(answer.to_json(), sort_keys=True, indent=2))
        return
    if trace:
        for number, hop in enumerate(answer.hops, 1):
            verdict = {True: "contradicts", False: "does not contradict", None: "not judged"}[hop.contradicts]
            click.echo(f"{number}. {hop.subquestion}")
            click.echo(f"   model: {hop.generated or '-'}")
            click.echo(f"   fact:  {hop.fact} (score {hop.score:.2f}; {verdict}) -> {hop.intermediate or '-'}")
        for note in answer.notes:
            click.echo(f"   ({note})")
    text = answer.text if answer.text is not None else "(no answer)"
    forced = " (asked for at the hop bound)" if answer.forced else ""
    click.echo(click.style(text, bold=True) + forced + f"  [{answer.seconds:.1f} s]")


COMMANDS: list[click.Command] = [ask_command]

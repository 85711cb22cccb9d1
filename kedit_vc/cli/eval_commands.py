"""``kvc bench``, ``kvc eval`` and ``kvc check``: flags in, one library call, a table (or JSON) out.

torch and the evaluation library are imported inside the commands so ``kvc --help``
stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from kedit_vc.editors.defaults import DEFAULT_METHOD
from kedit_vc.errors import UsageError
from kedit_vc.eval.registry import CF_HEADLINES, CF_SCORE, GENERATIVE, HEADLINES, RAW

from .options import (
    collect_minimums,
    eval_batch_option,
    hparam_option,
    json_option,
    method_option,
    model_option,
    parse_hparams,
    progress_option,
    resolve_progress,
    threshold_options,
)

if TYPE_CHECKING:
    from kedit_vc.compiler.plan import Expectation
    from kedit_vc.eval.report import EvalReport


@click.command("bench")
@click.argument("benchmark", type=click.Choice(["counterfact", "counterfact5k", "zsre", "mquake"]))
@click.option("--n", "n", type=click.IntRange(min=1), default=100, show_default=True, help="Number of cases.")
@click.option("--skip", type=click.IntRange(min=0), default=0, show_default=True,
              help="Start after this many records (keep records used to choose settings out of a report).")
@method_option(DEFAULT_METHOD, "Editing method.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Cases per editor call (--batch N: one batch).")
@click.option("--sequential", is_flag=True, help="Keep each edit applied; evaluate all cases at the end.")
@hparam_option
@model_option()
@click.option("--data", "data", type=click.Path(file_okay=False), default=None,
              help="Folder with the benchmark files (default: $KVC_DATA or <repo>/../shared/data).")
@eval_batch_option
@click.option("--fluency-tokens", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also measure fluency from generations of this many tokens (CounterFact).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the full result as JSON to this file ('-' for stdout).")
@click.option("--given-neighbours", type=click.IntRange(min=0), default=0, show_default=True,
              help="Hand each editor the last K neighbourhood prompts of a record (T-Patcher, CaliNet and WISE "
                   "train against declared neighbours) and score only the others.")
@click.option("--progress/--no-progress", default=False)
def bench_command(benchmark: str, n: int, skip: int, method: str, batch: int, sequential: bool,
                  hparams: tuple[str, ...], model_ref: str, data: str | None, eval_batch_size: int, fluency_tokens: int,
                  json_out: str | None, given_neighbours: int, progress: bool) -> int:
    """Run an edit benchmark on the shared data and print the reference summary.

    An editor is never handed a probe that is scored: it gets each record's rewrite and,
    with --given-neighbours K, the last K neighbourhood prompts, which are then not scored.

    \b
    Examples:
      kvc bench counterfact --n 100 --method rome
      kvc bench counterfact --n 100 --method memit --batch 100
      kvc bench zsre --n 100 --method rome --json zsre.json
      kvc bench counterfact --skip 400 --n 40 --method memit --batch 40 --hparam raw_context=false
      kvc bench counterfact --skip 200 --n 10 --method tpatcher --given-neighbours 5
    """
    import json

    from kedit_vc.editors.base import get_editor
    from kedit_vc.editors.registry import build_hparams, check_hparams, require_method
    from kedit_vc.eval.datasets import load_cases
    from kedit_vc.models import load_model
    from kedit_vc.ops.bench import run_bench, run_facts

    overrides = parse_hparams(hparams)
    method = require_method(method).name
    try:
        hp = build_hparams(method.lower(), overrides)
    except TypeError as error:
        raise UsageError(f"--hparam for {method}: {error}") from None
    for problem in check_hparams(method, hp):
        raise UsageError(f"--hparam for {method}: {problem}")
    editor = get_editor(method)
    cases = load_cases(benchmark, n, data, skip=skip)
    loaded = load_model(model_ref, progress=progress)
    model, tokenizer = loaded.model, loaded.tokenizer
    result = run_bench(model, tokenizer, benchmark, cases, editor, hp, batch=batch, sequential=sequential,
                       eval_batch_size=eval_batch_size, fluency_tokens=fluency_tokens, progress=progress,
                       fingerprint=loaded.fingerprint, given_neighbours=given_neighbours)
    payload = {**result.to_json(), "given_neighbours": given_neighbours,
               "run": run_facts(model, method.lower(), hp, model_ref, loaded.fingerprint)}
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    if json_out == "-":
        click.echo(text, nl=False)
    else:
        click.echo(result.summary())
        if json_out:
            Path(json_out).write_text(text, encoding="utf-8")
    return 0


def _store_report(rev: str, progress: bool) -> "tuple[EvalReport, tuple[Expectation, ...]]":
    """Evaluate the live edits at ``rev``; expectations are the `expect` lines of their commits' plans."""
    from kedit_vc.compiler.plan import Plan
    from kedit_vc.ops import Evaluator
    from kedit_vc.store import open_store

    with open_store() as store:
        evaluation = Evaluator(store, progress=progress).evaluate(rev)
        expectations: dict = {}
        for sha in store.live_commits(evaluation.sha):
            plan = store.read_commit(sha).plan
            for e in Plan.from_json(plan).expectations if plan else ():
                expectations.setdefault((e.metric, e.op, e.threshold), e)
    return evaluation.report, tuple(expectations.values())


@click.command("eval")
@click.argument("rev", default="HEAD")
@click.option("--spec", "spec_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Score this spec's probes at REV instead of the live edits' stored probes.")
@click.option("--history", is_flag=True,
              help="Metrics of all live edits after each commit (the sequential-editing curve).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="With --history: also draw the curve to this PNG.")
@json_option
@eval_batch_option
@click.option("--prompts", type=click.Choice(["prefixed", "raw", "both"]), default="both", show_default=True,
              help="Prompt forms to show: as the editor saw them (prefix token) or raw, as a user types them.")
@click.option("--generative/--no-generative", default=True, show_default=True,
              help="Also judge greedy continuations (gen_* metrics).")
@click.option("--sample", type=click.IntRange(min=1), default=None, metavar="N",
              help="Score a random sample of N live edits (seeded: the same N give the same edits).")
@progress_option
def eval_command(rev: str, spec_path: str | None, history: bool, plot_path: str | None, as_json: bool,
                 eval_batch_size: int, prompts: str, generative: bool, sample: int | None,
                 progress: bool | None) -> int:
    """Evaluate every live edit at REV (default HEAD) against the base model; results are cached.

    \b
    Examples:
      kvc eval
      kvc eval HEAD~2 --json
      kvc eval --history --plot curve.png
      kvc eval --prompts raw
      kvc eval --sample 200 --no-generative     # thousands of live edits: a quick estimate

    Teacher-forced metrics sit beside generative ones (gen_*: the bounded greedy
    continuation contains the new object; for locality probes, still the old answer),
    each on prefixed and raw prompts (raw_* in --json).
    """
    import json

    from kedit_vc.ops import Evaluator, evaluate_history
    from kedit_vc.store import open_store

    if plot_path and not history:
        raise UsageError("--plot draws the --history curve; pass --history too")
    if spec_path and history:
        raise UsageError("--spec and --history do not combine: --history evaluates the stored edits of each commit")
    if sample is not None and history:
        raise UsageError("--sample and --history do not combine: --history scores every live edit of each commit")
    with open_store() as store:
        evaluator = Evaluator(store, progress=resolve_progress(progress), batch_size=eval_batch_size, prompts=prompts,
                              generative=generative)
        if history:
            points = evaluate_history(evaluator, rev)
            if as_json:
                click.echo(json.dumps([{"commit": p.record.sha, "op": p.record.op, "live_edits": p.n_live,
                                        **p.evaluation.report.to_json()} for p in points], indent=2, sort_keys=True))
            else:
                click.echo(f"{'commit':<11} {'op':<7} {'live':>5} " + " ".join(f"{n[:11]:>11}" for n in HEADLINES))
                for p in points:
                    values = [p.evaluation.report.metrics.get(n) for n in HEADLINES]
                    click.echo(f"{p.record.short:<11} {p.record.op:<7} {p.n_live:>5} "
                               + " ".join(f"{'-' if v is None else f'{v:.4f}':>11}" for v in values))
            if plot_path:
                from kedit_vc.ops.plot import plot_history

                click.echo(f"wrote {plot_history(points, plot_path)}", err=True)
            return 0
        requests = None
        if spec_path:
            from kedit_vc.compiler import compile_file

            requests = compile_file(spec_path).requests
        evaluation = evaluator.evaluate(rev, requests, sample=sample)
    if as_json:
        click.echo(json.dumps(evaluation.to_json(), indent=2, sort_keys=True))
        return 0
    report = evaluation.report
    of = f" (a sample of {sample})" if sample is not None else ""
    click.echo(f"{evaluation.sha[:10]}: {report.n_edits} live edit(s){of}; pre = base model, post = this commit")
    if not report.rows:
        return 0
    names = (*HEADLINES, *GENERATIVE, *CF_HEADLINES.values(), CF_SCORE)
    forms = prompts if report.forms != "prefixed" else "prefixed"
    prefix = RAW if forms == "raw" else ""
    click.echo(report.forms_table([n for n in names if prefix + n in report.metrics], forms))
    return 0


@click.command("check")
@click.option("--report", "report_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="An evaluation report (JSON from `kvc eval --json`); default: evaluate the store's REV.")
@click.option("--rev", default="HEAD", show_default=True, help="Without --report: the commit to evaluate.")
@click.option("--plan", "plan_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A compiled plan whose `expect` lines are checked too.")
@threshold_options
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def check_command(report_path: str | None, rev: str, plan_path: str | None, as_json: bool, **thresholds: object) -> int:
    """Check metrics against thresholds: exit 0 if all hold, 1 if any falls short, 2 on usage errors.

    Without --report the store's live edits at REV are evaluated (cached) and the
    `expect` lines of their specs are checked along with the flags.

    \b
    Examples:
      kvc check --min-locality 0.95
      kvc check --report eval.json --min-locality 0.95 --min-reliability 0.9
      kvc check --report eval.json --plan plan.json --min reliability_cf=0.9
      kvc check --min-gen-reliability 0.8 --min raw_reliability=0.9

    Generative metrics (gen_*: the greedy continuation contains the answer) and raw-prompt
    metrics (raw_*: prompts without the prefix token) gate like any other.
    """
    import json

    from kedit_vc.compiler.plan import Plan
    from kedit_vc.eval.gate import run_gate
    from kedit_vc.eval.report import EvalReport

    flags = collect_minimums(dict(thresholds))
    expectations: tuple[Expectation, ...] = ()
    if plan_path:
        try:
            expectations = Plan.loads(Path(plan_path).read_text(encoding="utf-8")).expectations
        except (ValueError, KeyError) as error:
            raise UsageError(f"{plan_path}: not a kvc plan ({error})") from None
    if report_path is None:
        from kedit_vc.errors import StoreError

        try:
            report, stored = _store_report(rev, False)
        except StoreError as error:  # exit 1 means "a threshold failed"; this is usage
            raise UsageError(f"{error}, or pass --report FILE (from `kvc eval --json`)") from None
        expectations = (*expectations, *stored)
    else:
        try:
            report = EvalReport.loads(Path(report_path).read_text(encoding="utf-8"))
        except (ValueError, KeyError) as error:
            raise UsageError(f"{report_path}: not an evaluation report ({error})") from None
    result = run_gate(report, expectations, flags)
    if as_json:
        rows = [{"metric": r.threshold.metric, "op": r.threshold.op, "threshold": r.threshold.threshold,
                 "value": r.value, "ok": r.ok, "source": r.threshold.source} for r in result.rows]
        click.echo(json.dumps({"exit_code": result.exit_code, "rows": rows}, indent=2, sort_keys=True))
    else:
        click.echo(result.table())
        click.echo(result.summary())
    return result.exit_code


COMMANDS: list[click.Command] = [bench_command, eval_command, check_command]

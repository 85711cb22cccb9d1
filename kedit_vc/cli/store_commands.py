"""``kvc init/commit/log/show/diff/revert/squash/export/status/fsck``: the store's verbs.

Each command parses flags, calls one function of ``kedit_vc.ops`` and prints a table
(or JSON). torch is imported inside the commands, so ``kvc --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import click

from kedit_vc.eval.registry import GENERATIVE, HEADLINES

from .options import (
    collect_minimums,
    echo_before_after,
    echo_losses,
    eval_batch_option,
    hparam_option,
    json_option,
    message_option,
    method_option,
    model_option,
    parse_hparams,
    progress_option,
    resolve_progress,
    threshold_options,
    wait_option,
)

if TYPE_CHECKING:
    from kedit_vc.eval.report import EvalReport

COST = ["seconds", "peak_rss_bytes", "delta_bytes"]


def _open():  # noqa: ANN202
    from kedit_vc.store import open_store

    return open_store()


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str))


def _report_table(report: "EvalReport", extra: list[str] | None = None) -> str:
    """Headline and generative metrics, prefixed and raw prompts side by side; then ``extra`` (costs)."""
    def present(names: list[str]) -> list[str]:
        return [n for n in names if n in report.metrics or n in report.pre_metrics]

    names, extras = present([*HEADLINES, *GENERATIVE]), present(extra or [])
    if not names and not extras:
        return "(no probes to score)"
    parts = [report.forms_table(names, "prefixed" if report.forms == "prefixed" else "both")] if names else []
    return "\n".join(parts + ([report.table(extras)] if extras else []))


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False), default=".")
@model_option(lead="The base model every edit applies to.")
@progress_option
def init_command(directory: str, model_ref: str, progress: bool | None) -> None:
    """Create a store in DIRECTORY (default: here) recording the base model (never copied).

    \b
    Example:
      kvc init --model smollm2
    """
    from kedit_vc.ops import init

    with init(directory, model_ref, progress=resolve_progress(progress)) as store:
        click.echo(f"Initialised kvc store in {store.paths.kvc}")
        click.echo(f"base model {store.model_ref}  fingerprint {store.fingerprint}")


@click.command("commit")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@message_option
@method_option(None, "Use this editing method for every edit (overrides the spec's).")
@hparam_option
@click.option("--gate", is_flag=True,
              help="Refuse the commit unless reliability >= 0.9 (or the --min-METRIC thresholds given).")
@threshold_options
@click.option("--supersede", is_flag=True, help="Replace live edits of the same subject and relation.")
@click.option("--derive/--no-derive", "derive", default=None,
              help="Add the edits the spec's rules imply (each recorded with its parent edit, rule and "
                   "evidence). Default: the spec's `derive = true|false`, else derive when the spec has "
                   "rules or aliases -- rules are opt-in (you wrote or included them), so writing them is "
                   "the request; `kvc compile --derive` previews.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, metavar="N",
              help="Commit in chunks of N edits, one commit each; run again after a stop to resume "
                   "after the last finished chunk.")
@wait_option
@eval_batch_option
@json_option
@progress_option
def commit_command(spec: str, message: str | None, method: str | None, hparams: tuple[str, ...], gate: bool,
                   supersede: bool, derive: bool | None, batch_size: int | None, wait: bool, eval_batch_size: int,
                   as_json: bool, progress: bool | None, **thresholds: Any) -> int:
    """Compile SPEC, edit HEAD's weights, evaluate before and after, and commit.

    The spec's `expect` lines always gate; --gate and --min-METRIC add thresholds. A
    refused commit writes nothing and prints the thresholds that fell short (exit 1).

    \b
    Examples:
      kvc commit specs/demo.kedit -m "demo facts"
      kvc commit facts.kedit --method memit --gate --min-locality 0.95
      kvc commit facts.kedit --method auto --hparam 'candidates=["rome","memit"]'
      kvc commit table.kedit --method ultraedit --batch-size 100   # thousands of facts, resumable
    """
    from kedit_vc.ops import CommitOptions, CommitRefused, commit_spec

    options = CommitOptions(message=message, method=method, hparams=parse_hparams(hparams),
                            minimums=collect_minimums(thresholds), gate=gate, supersede=supersede, wait=wait,
                            progress=resolve_progress(progress), eval_batch_size=eval_batch_size,
                            derive=derive)
    if batch_size is not None:
        return _commit_batches(spec, batch_size, options, as_json)
    with _open() as store:
        try:
            result = commit_spec(store, spec, options)
        except CommitRefused as refused:
            r = refused.result
            if as_json:
                _echo_json({"committed": None, "metrics": r.report.to_json(),
                            "gate": [{"metric": g.threshold.metric, "op": g.threshold.op,
                                      "threshold": g.threshold.threshold, "value": g.value, "ok": g.ok}
                                     for g in r.gate.rows] if r.gate else []})
            else:
                click.echo(_report_table(r.report))
            click.secho(f"error: {refused}", fg="red", err=True)
            return 1
    if as_json:
        _echo_json({"committed": result.sha, "metrics": result.report.to_json(),
                    "timings": dict(result.timings), "delta": result.delta.summary().to_json()["totals"]})
        return 0
    n = len(result.plan.requests)
    assert result.sha is not None  # only a refused commit has none, and that raised above
    derived = len(result.plan.derived)
    click.echo(f"[{result.sha[:10]}] {n} edit(s)" + (f" ({derived} derived)" if derived else "")
               + f" with {result.method.replace(',', ', ')}")
    for request in result.plan.derived:
        assert request.derived is not None
        click.echo(f"  derived {request.edit_id} {request.subject!r} -> {request.target_new!r} "
                   f"from {request.derived.parent} by {request.derived.rule}")
    for note in result.plan.notes:
        click.echo(f"  note: {note}")
    for old in result.superseded:
        click.echo(f"  supersedes {old.request.edit_id} ({old.request.subject} -> {old.request.target_new}) "
                   f"of {old.sha[:10]}")
    click.echo(_report_table(result.report))
    summary = result.delta.summary()
    click.echo(f"delta: {len(summary.tensors)} tensor(s), {_human_bytes(summary.stored_bytes)} stored "
               f"(dense would be {_human_bytes(summary.dense_bytes)}); "
               f"edit {result.timings.get('edit_s', 0):.1f}s, total {result.timings.get('total_s', 0):.1f}s")
    if result.gate is not None:
        click.echo(result.gate.summary())
    return 0


def _commit_batches(spec: str, size: int, options: Any, as_json: bool) -> int:
    """``kvc commit --batch-size``: a bar over facts with an ETA, a line per chunk, resumable."""
    from kedit_vc.ops import CommitRefused
    from kedit_vc.ops.batches import ChunkEvent, commit_in_batches, eta_seconds

    events: list[ChunkEvent] = []

    def report(event: ChunkEvent) -> None:
        events.append(event)
        if as_json:
            return
        eta = eta_seconds(events)
        left = f", ETA {eta / 60:.1f} min" if eta is not None and event.done_edits < event.total_edits else ""
        if event.status == "skipped":
            line = f"chunk {event.index + 1}/{event.chunks}: {event.edits} edit(s) already live, skipped"
        else:
            assert event.result is not None and event.result.sha is not None
            rel = event.result.report.metrics.get("reliability")
            line = (f"chunk {event.index + 1}/{event.chunks}: [{event.result.sha[:10]}] {event.edits} edit(s) "
                    f"in {event.seconds:.1f}s" + (f", reliability {rel:.3f}" if rel is not None else ""))
        text = f"{line}  ({event.done_edits}/{event.total_edits} facts{left})"
        if bar is not None:
            bar.console.print(text, highlight=False)
            bar.update(task, completed=event.done_edits, total=event.total_edits)
        else:
            click.echo(text, err=True)

    bar = None
    if options.progress and not as_json and sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("facts"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       console=Console(stderr=True), transient=True)
        task = bar.add_task("facts", total=None)
    with _open() as store, (bar if bar is not None else contextlib.nullcontext()):
        try:
            commit_in_batches(store, spec, size, options, on_event=report)
        except CommitRefused as refused:
            click.echo(_report_table(refused.result.report))
            done = sum(e.edits for e in events)
            click.secho(f"error: {refused}; the {len(events)} chunk(s) before it ({done} edits) stay committed, "
                        "and running the same command again resumes here", fg="red", err=True)
            return 1
    committed = [e for e in events if e.status == "committed"]
    if as_json:
        _echo_json({"chunks": [{"chunk": e.index + 1, "status": e.status, "edits": e.edits,
                                "committed": e.result.sha if e.result else None,
                                "seconds": round(e.seconds, 3),
                                "metrics": e.result.report.to_json() if e.result else None} for e in events]})
        return 0
    skipped = len(events) - len(committed)
    click.echo(f"{len(committed)} chunk(s) committed, {skipped} already live; "
               f"{events[-1].total_edits if events else 0} edit(s) in all")
    return 0


@click.command("log")
@click.argument("rev", default="HEAD")
@click.option("--oneline", is_flag=True, help="One line per commit.")
@click.option("--metrics", is_flag=True, help="Show each commit's recorded metrics (no model is loaded).")
@click.option("-n", "limit", type=click.IntRange(min=1), default=None, help="Show at most N commits.")
@click.option("--graph", "as_graph", is_flag=True,
              help="Draw every parent (merges have two), one line per commit, with branch and tag names.")
@click.option("--all", "all_branches", is_flag=True, help="With --graph: every branch and tag, not only REV.")
@json_option
def log_command(rev: str, oneline: bool, metrics: bool, limit: int | None, as_graph: bool, all_branches: bool,
                as_json: bool) -> None:
    """The history of REV (default HEAD), newest first.

    \b
    Examples:
      kvc log --oneline
      kvc log --metrics -n 5
      kvc log --graph --all
    """
    from kedit_vc.ops.inspect import derived_of, headline

    with _open() as store:
        if as_graph:
            _print_graph(store, rev, limit, all_branches, metrics)
            return
        records = store.log(rev, limit)
        live = set(store.live_commits(rev))
    derived = {r.sha: len(derived_of(r)) for r in records}
    if as_json:
        _echo_json([{"commit": r.sha, "op": r.op, "message": r.message, "time": r.time, "live": r.sha in live,
                     "edit_ids": list(r.edit_ids), "method": r.method,
                     "trained_editors": _trained_editors(r.manifest), "metrics": headline(r),
                     "derived": derived[r.sha]} for r in records])
        return
    for r in records:
        marks = f"{r.op:<6}" + (" live" if r.sha in live else "     ")
        title = r.message.splitlines()[0] if r.message else ""
        if derived[r.sha]:
            title += f" ({derived[r.sha]} derived)"
        values = "  ".join(f"{k[:3]} {v:.2f}" for k, v in headline(r).items()) if metrics else ""
        if oneline:
            click.echo(f"{r.short}  {marks}  {title}" + (f"  [{values}]" if values else ""))
            continue
        when = datetime.fromtimestamp(r.time, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        click.secho(f"commit {r.sha}", fg="yellow")
        click.echo(f"op:     {r.op}{' (live)' if r.sha in live else ''}" + (f"  method {r.method}" if r.method else ""))
        click.echo(f"date:   {when}")
        for trained in _trained_editors(r.manifest):
            click.echo(f"editor: {trained}")
        if r.reverts:
            click.echo(f"reverts {r.reverts}")
        if r.edit_ids:
            click.echo(f"edits:  {', '.join(r.edit_ids)}" + (f"  ({derived[r.sha]} derived)" if derived[r.sha] else ""))
        if values:
            click.echo(f"metrics: {values}")
        click.echo("\n    " + "\n    ".join(r.message.splitlines() or [""]) + "\n")


def _trained_editors(manifest: Any) -> list[str]:
    """``method hash`` of each trained editor (MEND, KE) that produced a commit's edits."""
    infos = (manifest.get("extra") or {}).get("editor_info") or []
    return sorted({f"{i.get('method')} {i['trained_editor'][:16]}" for i in infos
                   if isinstance(i, dict) and i.get("trained_editor")})


def _print_graph(store: Any, rev: str, limit: int | None, all_branches: bool, metrics: bool) -> None:
    from kedit_vc.ops.branches import graph
    from kedit_vc.ops.inspect import headline

    live = set(store.live_commits(rev))
    for line in graph(store, rev, limit, all_branches):
        if line.sha is None:
            click.echo(line.graph.rstrip())
            continue
        r = store.read_commit(line.sha)
        names = click.style(f"({', '.join(line.refs)}) ", fg="cyan") if line.refs else ""
        title = r.message.splitlines()[0] if r.message else ""
        values = "  ".join(f"{k[:3]} {v:.2f}" for k, v in headline(r).items()) if metrics else ""
        mark = f"{r.op:<6}" + (" live" if r.sha in live else "     ")
        click.echo(f"{line.graph}{click.style(r.short, fg='yellow')} {mark}  {names}{title}"
                   + (f"  [{values}]" if values else ""))


@click.command("show")
@click.argument("rev", default="HEAD")
@json_option
def show_command(rev: str, as_json: bool) -> None:
    """One commit: its spec, plan, delta (tensors, ranks, norms, bytes) and metrics.

    \b
    Example:
      kvc show HEAD~1
    """
    from kedit_vc.eval.report import EvalReport
    from kedit_vc.ops import show

    with _open() as store:
        info = show(store, rev)
    if as_json:
        _echo_json(info)
        return
    m = info["manifest"]
    click.secho(f"commit {info['commit']}", fg="yellow")
    n_derived = len(info.get("derived", ()))
    click.echo(f"op {m['op']}, method {m.get('method')}, parent {str(m.get('parent'))[:10]}"
               + (f", {n_derived} derived" if n_derived else ""))
    for trained in _trained_editors(m):
        click.echo(f"trained editor {trained}")
    click.echo("\n    " + "\n    ".join(info["message"].splitlines()) + "\n")
    merged = m.get("extra", {}).get("merge", {})
    if merged.get("strategy"):
        click.echo(f"merge strategy {merged['strategy']}: {merged.get('strategy_reason', '')}")
        for a in merged.get("attempts", ()) if len(merged.get("attempts", ())) > 1 else ():
            click.echo(f"  tried {a['strategy']:<8} {a['seconds']:>9.1f} s, {a['edits_weakened']} edit(s) weakened")
        click.echo()
    weakened = m.get("extra", {}).get("weakened", [])
    if weakened:
        click.secho(f"weakened by this squash (--allow-loss): {len(weakened)} check(s)", bold=True)
        for w in weakened:
            click.echo(f"  {w['edit_id']}  {w['subject']} -> {w['target']}: {w['check']}")
        click.echo()
    if info["spec"]:
        click.secho("spec", bold=True)
        click.echo(info["spec"].rstrip() + "\n")
    if info["plan"]:
        click.secho("plan", bold=True)
        click.echo(info["plan"])
    if info["delta"] and info["delta"]["tensors"]:
        click.secho("delta", bold=True)
        click.echo(_delta_table(info["delta"]))
    for patch in info.get("patches") or ():
        click.secho(f"patch: {patch['kind']}", bold=True)
        click.echo(_patch_line(patch))
    metrics = info["metrics"]
    if metrics.get("version") is not None:
        click.secho("metrics", bold=True)
        click.echo(_report_table(EvalReport.from_json(metrics), COST))


def _patch_line(patch: dict[str, Any]) -> str:
    """One line per non-delta patch: a codebook's module, entries added, their radii, changes;
    a kind's own ``summary`` line (a side memory's module, edits, threshold, size) otherwise."""
    if isinstance(patch.get("line"), str):  # a kind that words its own summary (the edit memory)
        return str(patch["line"])
    if patch.get("kind") != "codebook":
        return str(patch["summary"]) if patch.get("summary") else json.dumps(patch, sort_keys=True)
    radii = ", ".join(f"{r:.3g}" for r in patch["radii"][:8]) + (" ..." if len(patch["radii"]) > 8 else "")
    changes = patch["radius_changes"]
    moved = "; ".join(f"{c['entry']} -> {c['radius']:.3g}" for c in changes[:4])
    moved += " ..." if len(changes) > 4 else ""
    added = patch["entries_added"]
    return (f"codebook at {patch['module']}: +{added} entr{'y' if added == 1 else 'ies'} (radii {radii or '-'}), "
            f"{len(changes)} radius change(s) to earlier entries" + (f": {moved}" if changes else ""))


def _delta_table(summary: dict[str, Any]) -> str:
    lines = [f"{'tensor':<44} {'kind':<8} {'shape':<12} {'rank':>5} {'norm':>10} {'bytes':>10}"]
    for t in summary["tensors"]:
        shape = "x".join(map(str, t["shape"]))
        rank = "-" if t["rank"] is None else str(t["rank"])
        lines.append(f"{t['name']:<44} {t['kind']:<8} {shape:<12} {rank:>5} {t['norm']:>10.4f} "
                     f"{_human_bytes(t['stored_bytes']):>10}")
    totals = summary["totals"]
    lines.append(f"{totals['tensors']} tensor(s), norm {totals['norm']:.4f}, {_human_bytes(totals['stored_bytes'])} "
                 f"stored, {_human_bytes(totals['dense_bytes'])} dense")
    return "\n".join(lines)


@click.command("diff")
@click.argument("rev_a")
@click.argument("rev_b", default="HEAD")
@click.option("--eval", "evaluate", is_flag=True, help="Also load the model and list probes whose predictions differ.")
@json_option
@progress_option
def diff_command(rev_a: str, rev_b: str, evaluate: bool, as_json: bool, progress: bool | None) -> None:
    """What changes from REV_A to REV_B (default HEAD): weights and edits.

    \b
    Examples:
      kvc diff HEAD~2 HEAD
      kvc diff HEAD~1 --eval
    """
    from kedit_vc.ops import diff

    with _open() as store:
        d = diff(store, rev_a, rev_b, evaluate=evaluate, progress=resolve_progress(progress))
    if as_json:
        _echo_json(d.to_json())
        return
    click.echo(f"diff {d.a[:10]}..{d.b[:10]}: {len(d.commits_added)} commit(s) added, "
               f"{len(d.commits_removed)} removed")
    click.echo(_delta_table(d.delta) if d.delta and d.delta["tensors"] else "weights: identical")
    for sign, patches in (("+", d.patches_added), ("-", d.patches_removed)):
        for patch in patches:
            click.echo(f"{sign} {patch['commit'][:10]} " + _patch_line(patch))
    for sign, edits in (("+", d.edits_added), ("-", d.edits_removed)):
        for e in edits:
            r = e.request
            via = f"  (derived from {r.derived.parent} by {r.derived.rule})" if r.derived is not None else ""
            click.echo(f"{sign} {r.edit_id}  {r.subject!r}: {r.prompt!r}  "
                       f"{r.target_true or '?'} -> {r.target_new}{via}")
    if d.changed is not None:
        click.echo(f"{len(d.changed)} probe prediction(s) differ")
        for c in d.changed:
            click.echo(f"  {c.kind:<10} {c.prompt!r}: {c.at_a!r} -> {c.at_b!r}")


@click.command("revert")
@click.argument("rev")
@message_option
@wait_option
@eval_batch_option
@json_option
@progress_option
def revert_command(rev: str, message: str | None, wait: bool, eval_batch_size: int, as_json: bool,
                   progress: bool | None) -> None:
    """Undo REV's delta exactly with a new commit, then re-check the edits still live.

    \b
    Example:
      kvc revert HEAD~1
    """
    from kedit_vc.ops import revert

    with _open() as store:
        r = revert(store, rev, message=message, wait=wait, progress=resolve_progress(progress),
                   eval_batch_size=eval_batch_size)
    if as_json:
        _echo_json({"committed": r.sha, "reverts": r.target, "before": r.before.to_json(), "after": r.after.to_json(),
                    "stopped_holding": list(r.stopped), "reverted_restored": r.restored})
        return
    click.echo(f"[{r.sha[:10]}] reverts {r.target[:10]} ({len(r.reverted)} edit(s))")
    for request in r.reverted:
        back = "back to the base model's prediction" if r.restored.get(request.edit_id) else \
            "NOT back to the base model's prediction"
        click.echo(f"  {request.subject}: {request.target_new} undone; rewrite prompt {back}")
    if r.after.rows:
        click.echo("edits still live, after the revert:")
        click.echo(_report_table(r.after))
    if r.stopped:
        click.secho(f"{len(r.stopped)} live edit(s) stopped holding: {', '.join(r.stopped)}", fg="red")
    else:
        click.echo("no live edit stopped holding")


def _squash_strategy(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--method`` of squash: a strategy name or a registered editing method."""
    from kedit_vc.editors.registry import require_method

    if value is None or value.lower() in ("compose", "auto"):
        return None if value is None else value.lower()
    return require_method(value).name


@click.command("squash")
@click.argument("range_text", metavar="A..B")
@message_option
@click.option("--method", default=None, callback=_squash_strategy, metavar="auto|compose|METHOD",
              help="auto (default): re-solve the live edits in one batch with the best re-solve for them "
                   "(joint_rome: ROME's closed form for all keys at once, for ROME edits of one layer; memit "
                   "otherwise), and compose instead if that would weaken an edit; compose: keep the range's "
                   "deltas, summed exactly; a method (joint_rome, memit, alphaedit, ultraedit): that re-solve, "
                   "no fallback. --hparam alone means memit.")
@hparam_option
@click.option("--allow-loss", is_flag=True,
              help="Commit even if edits that held before would be weakened (they are recorded in the commit).")
@click.option("--dry-run", is_flag=True, help="Squash in memory and show the before/after table; write nothing.")
@wait_option
@eval_batch_option
@json_option
@progress_option
def squash_command(range_text: str, message: str | None, method: str | None, hparams: tuple[str, ...],
                   allow_loss: bool, dry_run: bool, wait: bool, eval_batch_size: int, as_json: bool,
                   progress: bool | None) -> int:
    """Squash the commits after A up to B into one commit.

    By default the range's live edits are re-solved as one batch on A's weights. For ROME
    commits of one layer that is joint ROME: ROME's own closed form (the smallest change of
    the matrix under the covariance that maps each key to its target) applied to all n keys
    at once, solved from the commits' own keys with the values the model at B writes there
    as targets (no target optimisation; that solve is the exact sum of the parts), stored as
    a rank-n factor pair. Other ranges are re-solved by MEMIT, targets optimised on A. If
    the re-solve would weaken an edit, the range's deltas are composed instead (summed
    exactly: the model after is the model at B) and the output and the commit message say
    so. --method compose composes directly; --method joint_rome re-optimises targets on A.

    What is stored: a re-solve that keeps every edit is compacted, its factors stored in
    float16 (half the bytes of the parts: bench/results/squash.json) when every edit still
    holds with them, else in float32; weights are always formed in float32, so reverting
    the squash commit gives the weights back exactly. A composed patch is as big as its
    parts (stored dense, so smaller, past 419 rank-one edits of SmolLM2's MLP matrix).

    Gated: every edit whose rewrite prompt, paraphrases or greedy answer (prefixed and raw)
    held at B must still hold after, or the squash is refused (exit 1) with a table of what
    would be lost and nothing is written. The old commits stay reachable under
    refs/kvc/squashed/<old head>.

    \b
    Examples:
      kvc squash HEAD~3..HEAD
      kvc squash HEAD~3..HEAD --dry-run
      kvc squash HEAD~3..HEAD --method compose
      kvc squash HEAD~2..HEAD --method joint_rome --hparam v_steps=40
      kvc squash HEAD~2..HEAD --method memit --allow-loss
    """
    from kedit_vc.ops import squash
    from kedit_vc.ops.squash import SquashRefused

    refused = None
    with _open() as store:
        try:
            r = squash(store, range_text, message=message, hparams=parse_hparams(hparams), wait=wait,
                       progress=resolve_progress(progress), eval_batch_size=eval_batch_size, method=method,
                       allow_loss=allow_loss, dry_run=dry_run)
        except SquashRefused as error:
            refused, r = error, error.result
    if as_json:
        _echo_json({"committed": r.sha, "refused": refused is not None, "dry_run": dry_run, "method": r.method,
                    "form": r.form, "base": r.base, "tip": r.tip, "commits": list(r.commits),
                    "edit_ids": list(r.edit_ids),
                    "losses": [loss.to_json() for loss in r.losses], "attempts": [dict(a) for a in r.attempts],
                    "before": r.before.to_json(), "after": r.after.to_json()})
    else:
        for tried in r.attempts:
            click.echo(f"tried {tried['method']} ({tried['form']}): {tried['edits_weakened']} edit(s) weakened, "
                       f"{tried['seconds']:.1f} s, {tried['delta_bytes']} bytes")
        if r.method == "compose" and r.attempts:
            click.secho("the re-solve would weaken edits, so the range's deltas are composed instead", fg="yellow")
        if r.sha is not None:
            click.echo(f"[{r.sha[:10]}] squashed {len(r.commits)} commit(s), {len(r.edit_ids)} edit(s), "
                       f"onto {r.base[:10]} with {r.method} ({r.form})")
        else:
            what = "dry run" if dry_run else "refused"
            click.echo(f"({what}) {len(r.commits)} commit(s), {len(r.edit_ids)} edit(s) re-solved with {r.method}")
        echo_before_after(r.before, r.after)
        echo_losses(r.losses)
    if refused is not None:
        click.secho(f"error: {refused}", fg="red", err=True)
        return 1
    return 0


@click.command("export")
@click.argument("rev", default="HEAD")
@click.option("-o", "--output", "output", type=click.Path(file_okay=False), required=True, help="Folder to write.")
@click.option("--format", "fmt", type=click.Choice(["hf", "peft"]), default="hf", show_default=True,
              help="hf: full weights for transformers; peft: the low-rank deltas as a LoRA adapter.")
@click.option("--force", is_flag=True, help="Replace the output folder if it is not empty.")
@progress_option
def export_command(rev: str, output: str, fmt: str, force: bool, progress: bool | None) -> None:
    """Write REV's weights (default HEAD) as a HuggingFace folder or a LoRA adapter.

    Side memories that are not weights (GRACE/WISE codebooks, T-Patcher's neurons)
    cannot be written: use kedit_vc.load_edited for those revisions. CaliNet's slots
    are MLP neurons of the model's own form: --format hf widens every MLP to hold them.

    \b
    Examples:
      kvc export -o edited-model
      kvc export HEAD~1 -o adapter --format peft
    """
    from kedit_vc.ops import export

    with _open() as store:
        r = export(store, rev, output, fmt, force=force, progress=resolve_progress(progress))
    click.echo(f"exported {r.sha[:10]} ({len(r.live_commits)} live commit(s)) as {fmt} to {r.path}: "
               f"{', '.join(r.files)}")


@click.command("status")
@json_option
def status_command(as_json: bool) -> None:
    """The store here: base model, HEAD, live commits and edits (no model is loaded)."""
    from kedit_vc.ops import status

    with _open() as store:
        info = status(store)
    if as_json:
        _echo_json(info)
        return
    click.echo(f"store {info['root']} (branch {info['branch']})")
    click.echo(f"base model {info['base_model']}  fingerprint {info['base_fingerprint']}")
    click.echo(f"HEAD {info['head'][:10]}: {info['commits']} commit(s), {info['live_commits']} live, "
               f"{info['live_edits']} live edit(s)")
    if info.get("in_progress"):
        kind = info["in_progress"]
        click.secho(f"a {kind} is stopped at conflicts: edit .kvc/MERGE_CONFLICTS.kedit, then "
                    f"`kvc {kind} --continue` (or `--abort`)", fg="yellow")


@click.command("fsck")
@click.option("--skip-model", is_flag=True, help="Do not load the base model to check its fingerprint.")
@click.option("--repair", is_flag=True, help="First rebuild the HEAD cache (.kvc/cache) from the history.")
@progress_option
def fsck_command(skip_model: bool, repair: bool, progress: bool | None) -> int:
    """Check every commit's manifest and delta hash, the HEAD cache, and the base model's fingerprint
    (exit 1 on problems)."""
    from kedit_vc.errors import KvcError

    with _open() as store:
        problems = []
        if repair:
            try:
                store.rebuild_head_cache()
                click.echo("rebuilt the HEAD cache from the history")
            except KvcError as error:
                problems.append(f"HEAD cache not rebuilt: {error}")
        problems += store.fsck()
        if not skip_model:
            from kedit_vc.ops.weights import load_base

            try:
                load_base(store, progress=resolve_progress(progress))
            except KvcError as error:
                problems.append(f"base model: {error}")
        n = len(store.chain("HEAD"))
    if problems:
        for line in problems:
            click.echo(line)
        click.secho(f"{len(problems)} problem(s) found", fg="red", err=True)
        return 1
    click.echo(f"ok: {n} commit(s) checked" + ("" if skip_model else ", base model fingerprint matches"))
    return 0


COMMANDS: list[click.Command] = [
    init_command, commit_command, log_command, show_command, diff_command, revert_command, squash_command,
    export_command, status_command, fsck_command,
]

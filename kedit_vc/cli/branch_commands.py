"""``kvc branch/switch/tag/merge/cherry-pick``: lines of history and moving edits between them.

Each command parses flags, calls one function of ``kedit_vc.ops.branches`` or
``kedit_vc.ops.merge`` and prints (or emits JSON). torch is imported only where a merge
re-solves edits.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from kedit_vc.errors import UsageError
from kedit_vc.eval.registry import HEADLINES

from .options import (
    echo_before_after,
    echo_losses,
    eval_batch_option,
    hparam_option,
    json_option,
    message_option,
    method_option,
    parse_hparams,
    progress_option,
    resolve_progress,
    wait_option,
)

if TYPE_CHECKING:
    from kedit_vc.ops.merge import MergeConflict, MergeResult


def _open():  # noqa: ANN202
    from kedit_vc.store import open_store

    return open_store()


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str))


@click.command("branch")
@click.argument("name", required=False)
@click.argument("start", required=False, default="HEAD")
@click.option("-d", "delete", is_flag=True, help="Delete branch NAME (it must be merged into HEAD).")
@click.option("-D", "force_delete", is_flag=True, help="Delete branch NAME even if it is not merged.")
@json_option
def branch_command(name: str | None, start: str, delete: bool, force_delete: bool, as_json: bool) -> None:
    """List branches (no NAME; * marks the current one), create NAME at START (default HEAD),
    or delete NAME (-d).

    \b
    Examples:
      kvc branch
      kvc branch capitals            # at HEAD; HEAD stays where it is
      kvc branch fix HEAD~2
      kvc branch -d capitals
    """
    from kedit_vc.ops import branches

    with _open() as store:
        if delete or force_delete:
            if name is None:
                raise UsageError("branch -d: name the branch to delete (argument NAME)")
            sha = branches.delete_branch(store, name, force=force_delete)
            click.echo(f"deleted branch {name} (was {sha[:10]})")
            return
        if name is not None:
            sha = branches.create_branch(store, name, start)
            click.echo(f"branch {name} at {sha[:10]}")
            return
        listed = branches.list_branches(store)
    if as_json:
        _echo_json([{"name": b.name, "commit": b.sha, "current": b.current, "title": b.title} for b in listed])
        return
    for b in listed:
        click.echo(f"{'*' if b.current else ' '} {b.name:<24} {b.sha[:10]}  {b.title}")


@click.command("switch")
@click.argument("name")
def switch_command(name: str) -> None:
    """Put HEAD on branch NAME; the next command sees that branch's weights (HEAD cache).

    \b
    Example:
      kvc switch capitals
    """
    from kedit_vc.ops import branches

    with _open() as store:
        moved = branches.switch(store, name)
    click.echo(f"switched to branch {moved.branch} ({moved.new[:10]})")


@click.command("tag")
@click.argument("name", required=False)
@click.argument("rev", required=False, default="HEAD")
@json_option
def tag_command(name: str | None, rev: str, as_json: bool) -> None:
    """List tags (no NAME), or tag REV (default HEAD) as NAME.

    \b
    Examples:
      kvc tag reviewed-2026-11
      kvc tag v1 HEAD~3
      kvc tag
    """
    from kedit_vc.ops import branches

    with _open() as store:
        if name is not None:
            sha = branches.create_tag(store, name, rev)
            click.echo(f"tag {name} at {sha[:10]}")
            return
        listed = branches.list_tags(store)
    if as_json:
        _echo_json(listed)
        return
    for tag, sha in listed.items():
        click.echo(f"{tag:<24} {sha[:10]}")


def _resolve_options(f):  # noqa: ANN001, ANN202
    for option in reversed([
        message_option,
        method_option(None, "Re-solve with this method (default: the method every edit was made with "
                            "when they agree, else memit)."),
        hparam_option,
        click.option("--allow-loss", is_flag=True,
                     help="Commit even if edits that held on their own side would be weakened (recorded)."),
        click.option("--dry-run", is_flag=True, help="Re-solve and show the before/after table; write nothing."),
        click.option("--continue", "resume", is_flag=True,
                     help="Finish a stopped run after editing its conflicts spec (.kvc/MERGE_CONFLICTS.kedit)."),
        click.option("--abort", is_flag=True, help="Abandon a stopped run; the store is left as it was."),
        wait_option, eval_batch_option, json_option, progress_option,
    ]):
        f = option(f)
    return f


def _print_conflict(conflict: "MergeConflict", as_json: bool) -> None:
    from kedit_vc.ops.merge import spec_template

    if as_json:
        _echo_json({"conflicts": [c.to_json() for c in conflict.conflicts],
                    "spec": str(conflict.spec_path) if conflict.spec_path else None})
        return
    for number, c in enumerate(conflict.conflicts, 1):
        click.secho(f"conflict {number}: {c.key[0]!r} / {spec_template(c.key[1])!r}", bold=True)
        for side in (c.ours, c.theirs):
            scores = "  ".join(f"{k[:3]} {v:.2f}" for k, v in side.metrics.items() if k in HEADLINES)
            click.echo(f"  {side.label:<24} {side.edit.sha[:10]}  {side.author}  {side.title}")
            click.echo(f"    {side.edit.request.edit_id}  {_spec_line(side)}" + (f"  [{scores}]" if scores else ""))


def _spec_line(side: Any) -> str:
    from kedit_vc.ops.merge import spec_line

    return spec_line(side.edit.request)


def _print_result(r: "MergeResult", as_json: bool) -> None:
    if as_json:
        _echo_json(r.to_json())
        return
    if r.outcome == "up-to-date":
        what = "already up to date" if r.kind == "merge" else "its edits are all live here already"
        click.echo(f"nothing to do: {what}")
        return
    if r.outcome == "fast-forward":
        click.echo(f"fast-forward {r.ours[:10]}..{r.theirs[:10]}")
        return
    how = "composed (both sides' deltas summed)" if r.strategy == "compose" else f"re-solved with {r.method}"
    if r.sha is not None:
        verb = "merged" if r.kind == "merge" else "picked"
        click.echo(f"[{r.sha[:10]}] {verb} {len(r.requests)} edit(s) from {r.theirs[:10]}, {how}"
                   + (f" on base {r.base[:10]}" if r.base else ""))
    else:
        click.echo(f"({r.outcome}) {len(r.requests)} edit(s) {how}")
    if r.kind == "merge" and r.reason:
        click.echo(f"  strategy {r.strategy}: {r.reason}")
        for a in r.attempts if len(r.attempts) > 1 else ():
            click.echo(f"    tried {a['strategy']:<8} {a['seconds']:>9.1f} s, {a['edits_weakened']} edit(s) weakened")
    for edit_id in r.skipped:
        click.echo(f"  {edit_id} is live here already: skipped")
    if r.kind == "cherry-pick":
        for edit_id in r.superseded:
            click.echo(f"  supersedes {edit_id}")
    if r.before is not None and r.after is not None:
        echo_before_after(r.before, r.after, "own side", "merged")
    echo_losses(r.losses)


def _run(kind: str, target: str | None, message: str | None, method: str | None, hparams: tuple[str, ...],
         allow_loss: bool, dry_run: bool, resume: bool, abort: bool, wait: bool, eval_batch_size: int,
         as_json: bool, progress: bool | None, strategy: str | None = None) -> int:
    from kedit_vc.ops import merge as merge_ops

    modes = [flag for flag, on in (("--continue", resume), ("--abort", abort)) if on]
    if len(modes) > 1:
        raise UsageError("--continue and --abort exclude each other")
    if modes and target is not None:
        raise UsageError(f"{modes[0]} takes no {'BRANCH' if kind == 'merge' else 'REV'} argument")
    if resume and (method or hparams or message or strategy):
        raise UsageError("--continue finishes with the options the run started with; pass --method, --hparam, "
                         "--strategy and -m with the BRANCH/REV that starts it")
    if not modes and target is None:
        raise UsageError(f"name what to {kind} (argument {'BRANCH' if kind == 'merge' else 'REV'}), "
                         "or pass --continue / --abort")
    common: dict[str, Any] = dict(allow_loss=allow_loss, dry_run=dry_run, wait=wait,
                                  progress=resolve_progress(progress), eval_batch_size=eval_batch_size)
    with _open() as store:
        if abort:
            state = merge_ops.abort(store)
            click.echo(f"{state.get('kind', kind)} aborted; the store is as it was")
            return 0
        try:
            if resume:
                result = merge_ops.resume(store, **common)
            else:
                assert target is not None
                if kind == "merge":
                    result = merge_ops.merge(store, target, method=method, hparams=parse_hparams(hparams),
                                             message=message, strategy=strategy or merge_ops.STRATEGY, **common)
                else:
                    result = merge_ops.cherry_pick(store, target, method=method, hparams=parse_hparams(hparams),
                                                   message=message, **common)
        except merge_ops.MergeConflict as conflict:
            _print_conflict(conflict, as_json)
            click.secho(f"error: {conflict}", fg="red", err=True)
            return 1
        except merge_ops.MergeRefused as refused:
            _print_result(refused.result, as_json)
            click.secho(f"error: {refused}", fg="red", err=True)
            return 1
    _print_result(result, as_json)
    return 0


@click.command("merge")
@click.argument("branch", required=False)
@_resolve_options
@click.option("--strategy", type=click.Choice(["auto", "resolve", "compose"], case_sensitive=False), default=None,
              help="resolve: re-solve the union from the merge base; compose: sum both sides' deltas since it "
                   "(no editor runs); auto (default): resolve, composing instead when that would weaken an edit.")
def merge_command(branch: str | None, **kwargs: Any) -> int:
    """Merge BRANCH into HEAD: re-solve both sides' edits since their common ancestor in one
    batch and commit with two parents (or fast-forward). If the re-solve would weaken an
    edit, the merge sums both sides' deltas since the ancestor instead (--strategy auto, the
    default; `kvc show` records which and why).

    Both sides editing one subject and relation to different objects is a conflict: the
    merge stops and shows both sides; keep one edit line of each pair in
    .kvc/MERGE_CONFLICTS.kedit, then `kvc merge --continue` (or `--abort`). Gated like
    squash: an edit that held on its own side must hold after, or nothing is written
    (exit 1) unless --allow-loss.

    \b
    Examples:
      kvc merge capitals
      kvc merge capitals --dry-run
      kvc merge capitals --method memit --hparam v_steps=40
      kvc merge capitals --strategy compose
      kvc merge --continue
    """
    return _run("merge", branch, **kwargs)


@click.command("cherry-pick")
@click.argument("rev", required=False)
@_resolve_options
def cherry_pick_command(rev: str | None, **kwargs: Any) -> int:
    """Re-apply REV's edits on HEAD: re-solved on HEAD's weights (not a copied delta), gated,
    committed; a live edit of the same fact with another object is a conflict (as in merge).

    \b
    Examples:
      kvc cherry-pick capitals~2
      kvc cherry-pick --continue
    """
    return _run("cherry-pick", rev, **kwargs)


COMMANDS: list[click.Command] = [branch_command, switch_command, tag_command, merge_command, cherry_pick_command]

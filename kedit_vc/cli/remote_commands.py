"""``kvc remote/push/pull/clone/gc``: sharing a store through git remotes, and tidying it.

Each command parses flags, calls one function of ``kedit_vc.ops.remote`` or
``kedit_vc.ops.gc`` and prints a line or two (or JSON).
"""

from __future__ import annotations

import json
from typing import Any

import click

from .options import json_option, wait_option


def _open():  # noqa: ANN202
    from kedit_vc.store import open_store

    return open_store()


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


@click.group("remote", invoke_without_command=True)
@json_option
@click.pass_context
def remote_command(ctx: click.Context, as_json: bool) -> None:
    """List the store's remotes, add one (`kvc remote add NAME URL`) or forget one (`kvc remote remove NAME`).

    \b
    A remote is any git repository git can reach: a bare repository on disk
    (git init --bare /srv/facts.git), ssh://host/path.git or https://... .
    """
    if ctx.invoked_subcommand is not None:
        return
    from kedit_vc.ops.remote import list_remotes

    with _open() as store:
        known = list_remotes(store)
    if as_json:
        _echo_json(known)
    elif not known:
        click.echo("no remotes; add one with `kvc remote add origin URL`")
    for name, url in known.items() if not as_json else ():
        click.echo(f"{name}\t{url}")


@remote_command.command("add")
@click.argument("name")
@click.argument("url")
def remote_add_command(name: str, url: str) -> None:
    """Add remote NAME at URL (a path to a repository on disk is recorded absolute)."""
    from kedit_vc.ops.remote import add_remote

    with _open() as store:
        recorded = add_remote(store, name, url)
    click.echo(f"added remote {name}: {recorded}")


@remote_command.command("remove")
@click.argument("name")
def remote_remove_command(name: str) -> None:
    """Forget remote NAME: its URL and remote-tracking refs (objects fetched stay until `kvc gc`)."""
    from kedit_vc.ops.remote import remove_remote

    with _open() as store:
        url = remove_remote(store, name)
    click.echo(f"removed remote {name} ({url})")


@click.command("push")
@click.argument("remote", required=False)
@click.option("--branch", default=None, help="Branch to push (default: HEAD's).")
@json_option
def push_command(remote: str | None, branch: str | None, as_json: bool) -> None:
    """Push the branch and the kept history of squashes to REMOTE (default: the branch's
    upstream, else origin). Never forced: a remote that moved on is left as it was.

    \b
    Example:
      git init --bare /srv/facts.git && kvc remote add origin /srv/facts.git && kvc push
    """
    from kedit_vc.ops.remote import push

    with _open() as store:
        result = push(store, remote, branch)
    if as_json:
        _echo_json(result.to_json())
        return
    state = "up to date" if not result.updated else f"{len(result.updated)} ref(s) updated"
    click.echo(f"pushed {result.branch} ({result.head[:10]}) to {result.remote} ({result.url}): {state}")


@click.command("pull")
@click.argument("remote", required=False)
@click.option("--branch", default=None, help="The remote's branch to pull (default: HEAD's branch).")
@json_option
def pull_command(remote: str | None, branch: str | None, as_json: bool) -> None:
    """Fetch REMOTE's branch, check every received commit, and fast-forward HEAD to it.

    A pull whose histories diverged changes nothing on the branch and tells you to
    run `kvc merge REMOTE/BRANCH`. The HEAD cache is brought to the new HEAD.
    """
    from kedit_vc.ops.remote import pull

    with _open() as store:
        result = pull(store, remote, branch)
    if as_json:
        _echo_json(result.to_json())
        return
    if result.status == "fast-forward":
        click.echo(f"fast-forwarded {result.old_head[:10]}..{result.new_head[:10]} from {result.remote}/"
                   f"{result.branch} ({result.received} new commit(s))")
    elif result.status == "ahead":
        click.echo(f"{result.remote}/{result.branch} is behind HEAD: nothing to pull (`kvc push` publishes HEAD)")
    else:
        click.echo(f"already up to date with {result.remote}/{result.branch}")


@click.command("clone")
@click.argument("url")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--branch", default=None, help="Branch to check out (default: the remote's HEAD, else main).")
@json_option
def clone_command(url: str, directory: str, branch: str | None, as_json: bool) -> None:
    """Make DIRECTORY/.kvc a verified copy of the kvc store at URL (DIRECTORY may be a project).

    \b
    Example:
      kvc clone /srv/facts.git my-project && cd my-project && kvc log --oneline
    """
    from kedit_vc.ops.remote import clone

    with clone(url, directory, branch) as store:
        head, n = store.head(), len(store.chain())
        from kedit_vc.store import gitio

        current = gitio.branch_ref(store.repo).removeprefix("refs/heads/")
        path = str(store.paths.kvc)
    if as_json:
        _echo_json({"url": url, "store": path, "branch": current, "head": head, "commits": n})
        return
    click.echo(f"cloned {url} into {path}: {current} at {head[:10]}, {n} commit(s)")


@click.command("gc")
@click.option("--prune-squashed", is_flag=True,
              help="Also let go of the history squashes replaced (refs/kvc/squashed/*); kept otherwise.")
@wait_option
@json_option
def gc_command(prune_squashed: bool, wait: bool, as_json: bool) -> None:
    """Delete git objects no ref reaches, unreferenced large deltas and a stale HEAD cache."""
    from kedit_vc.ops.gc import gc

    with _open() as store:
        result = gc(store, prune_squashed, wait)
    if as_json:
        _echo_json(result.to_json())
        return
    click.echo(f"objects {result.objects_before} -> {result.objects_after}, "
               f"{result.bytes_before / 1024:.0f} KiB -> {result.bytes_after / 1024:.0f} KiB")
    if result.pruned_squashed:
        click.echo(f"let go of {len(result.pruned_squashed)} squashed history ref(s)")
    if result.removed_objects:
        click.echo(f"removed {len(result.removed_objects)} unreferenced large delta(s) from .kvc/objects")
    if result.removed_head_cache:
        click.echo("removed a HEAD cache that was not for HEAD")


COMMANDS = [remote_command, push_command, pull_command, clone_command, gc_command]

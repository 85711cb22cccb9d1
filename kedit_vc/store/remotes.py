"""The git plumbing behind ``kvc remote/push/pull/clone``: ordinary git remotes of the
store's bare repository, run through the git binary (which reaches whatever git reaches:
a bare repository on disk, SSH, HTTPS, with the user's own credentials and config).

What travels: the branch (``refs/heads/<b>``), the kept history of squashes
(``refs/kvc/squashed/*``) and the large dense deltas kept beside git (``.kvc/objects``),
each as a blob under ``refs/kvc/objects/<content hash>`` (the remote holds them like any
git object; a receiver checks each against its hash before writing it to its own
``.kvc/objects``); never the HEAD cache or other caches. Received objects are
checked by git as they arrive (``transfer.fsckObjects``) and land under a quarantine
namespace (``refs/kvc/incoming/<remote>/``) that nothing else reads; the caller checks
them as kvc commits before it moves a ref anyone reads, and drops the quarantine after.

Concurrency: the receiving git (``receive-pack``) locks each ref it updates and refuses a
push that is not a fast-forward; ``--atomic`` makes a push of several refs all or nothing.
Two kvc processes pushing to one remote at once therefore leave it at one of the two
histories, never a mixture, and the loser is told to pull.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import git

from kedit_vc.errors import StoreError

from .layout import SQUASHED_REF_PREFIX, StorePaths

OBJECT_REF_PREFIX = "refs/kvc/objects/"
INCOMING_PREFIX = "refs/kvc/incoming/"
BRANCH_PREFIX = "refs/heads/"
_REMOTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: How git says it could not reach a remote (first line of its stderr is shown to the user).
_UNREACHABLE = ("does not appear to be a git repository", "Could not read from remote", "unable to access",
                "not found", "Could not resolve host", "Connection refused", "No such file or directory",
                "unable to connect", "Permission denied")


def _run(repo_dir: "str | os.PathLike[str]", args: Sequence[str], keep_fds: Sequence[int] = ()
         ) -> subprocess.CompletedProcess[str]:
    """``git --git-dir=REPO args`` without prompting for credentials (a hung prompt is worse
    than an error), output captured as text."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    return subprocess.run(["git", f"--git-dir={repo_dir}", *args], capture_output=True, text=True,
                          env=env, pass_fds=tuple(keep_fds))


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("hint:")]
    return lines[0].removeprefix("fatal: ").removeprefix("error: ") if lines else "no message"


def _unreachable(url: str, stderr: str) -> StoreError:
    return StoreError(f"cannot reach {url}: {_first_line(stderr)}; check the URL (`kvc remote`) and your access")


def stable_url(url: str) -> str:
    """A path to a repository on disk becomes absolute (the store may be used from any
    directory); URLs (ssh://, https://, user@host:path) are kept as written."""
    if "://" in url or re.match(r"^[^/]+@[^/:]+:", url):
        return url
    path = Path(url).expanduser()
    return str(path.resolve()) if path.exists() else url


def check_name(name: str) -> str:
    if not _REMOTE_NAME.match(name) or name.endswith(".lock") or ".." in name:
        raise StoreError(f"{name!r} is not a valid remote name; use letters, digits, '.', '_' or '-' (e.g. origin)")
    return name


def remotes(repo: git.Repo) -> dict[str, str]:
    """Remote name -> URL, sorted by name."""
    done = _run(repo.git_dir, ["config", "--get-regexp", r"^remote\..*\.url$"])
    out = {}
    for line in done.stdout.splitlines():
        key, _, url = line.partition(" ")
        out[key.removeprefix("remote.").removesuffix(".url")] = url
    return dict(sorted(out.items()))


def add_remote(repo: git.Repo, name: str, url: str) -> str:
    """``git remote add NAME URL``; returns the URL as recorded (paths made absolute)."""
    check_name(name)
    if name in remotes(repo):
        raise StoreError(f"remote {name!r} already exists ({remotes(repo)[name]}); pick another name")
    url = stable_url(url)
    done = _run(repo.git_dir, ["remote", "add", name, url])
    if done.returncode != 0:
        raise StoreError(f"cannot add remote {name!r}: {_first_line(done.stderr)}")
    return url


def remove_remote(repo: git.Repo, name: str) -> str:
    """``git remote remove NAME``: its URL, remote-tracking refs and upstream settings go;
    the objects fetched from it stay (``kvc gc`` prunes what nothing reaches). Returns its URL."""
    url = remote_url(repo, name)
    done = _run(repo.git_dir, ["remote", "remove", name])
    if done.returncode != 0:
        raise StoreError(f"cannot remove remote {name!r}: {_first_line(done.stderr)}")
    return url


def remote_url(repo: git.Repo, name: str) -> str:
    known = remotes(repo)
    if name not in known:
        listed = ", ".join(known) if known else "none yet"
        raise StoreError(f"unknown remote {name!r} (known: {listed}); add it with `kvc remote add {name} URL`")
    return known[name]


def ls_remote(repo_dir: Path | str, url: str) -> dict[str, str]:
    """The refs a remote has (ref -> sha); raises ``StoreError`` when it cannot be reached."""
    done = _run(repo_dir, ["ls-remote", url])
    if done.returncode != 0:
        raise _unreachable(url, done.stderr)
    refs = {}
    for line in done.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        if ref and not ref.endswith("^{}"):
            refs[ref] = sha
    return refs


def remote_head_branch(repo_dir: Path | str, url: str) -> str | None:
    """The branch the remote's HEAD names (``main``), or None."""
    done = _run(repo_dir, ["ls-remote", "--symref", url, "HEAD"])
    for line in done.stdout.splitlines():
        if line.startswith("ref: "):
            target = line[5:].split("\t")[0]
            return target.removeprefix(BRANCH_PREFIX)
    return None


def incoming_prefix(remote: str) -> str:
    return f"{INCOMING_PREFIX}{remote}/"


def fetch_incoming(repo: git.Repo, remote: str, url: str, keep_fds: Sequence[int] = ()) -> dict[str, str]:
    """Fetch the remote's branches and squashed history into the quarantine namespace.

    Returns {remote ref (``refs/heads/main``, ``refs/kvc/squashed/<sha>``,
    ``refs/kvc/objects/<hash>``): sha}. git checks every received object
    (``transfer.fsckObjects``) before it writes any ref.
    """
    prefix = incoming_prefix(remote)
    clear_incoming(repo, remote)
    specs = [f"+{BRANCH_PREFIX}*:{prefix}heads/*", f"+{SQUASHED_REF_PREFIX}*:{prefix}squashed/*",
             f"+{OBJECT_REF_PREFIX}*:{prefix}objects/*"]
    done = _run(repo.git_dir, ["-c", "transfer.fsckObjects=true", "fetch", "--no-tags", "--no-write-fetch-head",
                               "--quiet", url, *specs], keep_fds)
    if done.returncode != 0:
        clear_incoming(repo, remote)
        if any(marker in done.stderr for marker in _UNREACHABLE):
            raise _unreachable(url, done.stderr)
        raise StoreError(f"fetching from {url} failed, nothing changed: {_first_line(done.stderr)}")
    names = {f"{prefix}heads/": BRANCH_PREFIX, f"{prefix}squashed/": SQUASHED_REF_PREFIX,
             f"{prefix}objects/": OBJECT_REF_PREFIX}
    out = {}
    for ref, sha in refs_under(repo, prefix).items():
        local = next(p for p in names if ref.startswith(p))
        out[names[local] + ref[len(local):]] = sha
    return out


def commit_refs(got: Mapping[str, str]) -> dict[str, str]:
    """The refs of ``fetch_incoming``'s answer that name commits (branches, kept histories)."""
    return {ref: sha for ref, sha in got.items() if not ref.startswith(OBJECT_REF_PREFIX)}


def object_blobs(repo: git.Repo, paths: StorePaths, hashes: Iterable[str]) -> dict[str, str]:
    """Blobs holding the large deltas ``hashes`` from ``.kvc/objects`` (written into the
    repository as loose objects, unreachable until pushed): hash -> blob sha."""
    out = {}
    for content in hashes:
        path = paths.object_path(content)
        if not path.is_file():
            raise StoreError(f"the large delta {content[:16]} is missing from {paths.objects}; `kvc fsck` "
                             "lists the commits that need it")
        done = _run(repo.git_dir, ["hash-object", "-w", str(path)])
        done.check_returncode()
        out[content] = done.stdout.strip()
    return out


def receive_objects(repo: git.Repo, paths: StorePaths, got: Mapping[str, str]) -> int:
    """Write the large deltas that arrived as blobs into ``.kvc/objects``, each checked
    against its content hash first (a mismatch raises ``StoreError``); returns how many."""
    from kedit_vc.delta import Delta
    from kedit_vc.fsio import atomic_write_bytes

    written = 0
    for ref, blob in got.items():
        if not ref.startswith(OBJECT_REF_PREFIX):
            continue
        content = ref[len(OBJECT_REF_PREFIX):]
        path = paths.object_path(content)
        if path.is_file():
            continue
        data = subprocess.run(["git", f"--git-dir={repo.git_dir}", "cat-file", "blob", blob],
                              capture_output=True, check=True).stdout
        Delta.from_bytes(data, expected_hash=content, source=f"the large delta {content[:16]} received")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data, paths.tmp)
        written += 1
    return written


def clear_incoming(repo: git.Repo, remote: str | None = None) -> None:
    """Drop the quarantine refs (of one remote, or all): their objects become unreachable."""
    prefix = incoming_prefix(remote) if remote else INCOMING_PREFIX
    delete_refs(repo, refs_under(repo, prefix))


def refs_under(repo: git.Repo, prefix: str) -> dict[str, str]:
    done = _run(repo.git_dir, ["for-each-ref", "--format=%(refname) %(objectname)", prefix])
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if line)


def update_refs(repo: git.Repo, updates: Mapping[str, tuple[str, str | None]]) -> None:
    """Set several refs in one transaction (``git update-ref --stdin``): ref -> (new, expected old).

    ``expected old`` None means "whatever it is"; "" means "must not exist". git locks every
    ref, checks every expectation, then renames them into place, or changes none.
    """
    if not updates:
        return
    lines = ["start"]
    for ref, (new, old) in updates.items():
        lines.append(f"update {ref} {new}" + ("" if old is None else f" {old or '0' * 40}"))
    lines += ["prepare", "commit"]
    done = subprocess.run(["git", f"--git-dir={repo.git_dir}", "update-ref", "--stdin"],
                          input="\n".join(lines) + "\n", capture_output=True, text=True)
    if done.returncode != 0:
        raise StoreError(f"could not move refs ({_first_line(done.stderr)}); another process changed them: "
                         "run the command again")


def delete_refs(repo: git.Repo, refs: Iterable[str]) -> None:
    """Delete ``refs`` (missing ones are fine)."""
    names = list(refs)
    if names:
        subprocess.run(["git", f"--git-dir={repo.git_dir}", "update-ref", "--stdin"],
                       input="".join(f"delete {ref}\n" for ref in names), capture_output=True, text=True,
                       check=True)


def is_ancestor(repo: git.Repo, older: str, newer: str) -> bool:
    return _run(repo.git_dir, ["merge-base", "--is-ancestor", older, newer]).returncode == 0


def merge_base(repo: git.Repo, a: str, b: str) -> str | None:
    done = _run(repo.git_dir, ["merge-base", a, b])
    return done.stdout.strip() or None if done.returncode == 0 else None


def new_commits(repo: git.Repo, tips: Iterable[str], known: Iterable[str]) -> set[str]:
    """Commits reachable from ``tips`` and from none of ``known`` (shas or refs)."""
    tips = list(dict.fromkeys(tips))
    if not tips:
        return set()
    known = list(dict.fromkeys(known))
    done = _run(repo.git_dir, ["rev-list", *tips, *(["--not", *known] if known else [])])
    done.check_returncode()
    return set(done.stdout.split())


@dataclass(frozen=True)
class PushedRef:
    """One line of ``git push --porcelain``: ``flag`` is ' ' (fast-forward), '*' (new),
    '=' (up to date), '!' (rejected), '+' (forced), '-' (deleted)."""

    flag: str
    ref: str
    summary: str


def push(repo: git.Repo, remote: str, refspecs: Sequence[str], keep_fds: Sequence[int] = ()) -> list[PushedRef]:
    """``git push --atomic --porcelain REMOTE refspecs`` (never forced). A rejection raises
    ``StoreError`` saying what to do; the remote is then unchanged (atomic)."""
    url = remote_url(repo, remote)
    done = _run(repo.git_dir, ["push", "--atomic", "--porcelain", remote, *refspecs], keep_fds)
    results = []
    for line in done.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1:
            results.append(PushedRef(parts[0], parts[1].split(":")[-1], parts[2]))
    rejected = [r for r in results if r.flag == "!"]
    if done.returncode == 0 and not rejected:
        return results
    behind = [r for r in rejected if "fetch first" in r.summary or "non-fast-forward" in r.summary]
    if behind:
        names = ", ".join(r.ref for r in behind)
        raise StoreError(f"{remote} has commits on {names} that this store lacks; nothing was pushed: "
                         f"run `kvc pull {remote}` (then `kvc merge` if the histories diverged) and push again")
    if rejected:
        detail = "; ".join(f"{r.ref}: {r.summary}" for r in rejected)
        if any("remote rejected" in r.summary for r in rejected):  # e.g. a ref locked by a push at the same moment
            raise StoreError(f"{remote} refused the push, nothing was pushed ({detail}); another push may have "
                             f"moved it at the same moment: run `kvc pull {remote}` and push again")
        raise StoreError(f"{remote} refused the push, nothing was pushed ({detail})")
    if any(marker in done.stderr for marker in _UNREACHABLE):
        raise _unreachable(url, done.stderr)
    raise StoreError(f"pushing to {remote} ({url}) failed, nothing was pushed: {_first_line(done.stderr)}")


def set_upstream(repo: git.Repo, branch: str, remote: str) -> None:
    """Record ``remote`` as where ``branch`` is pulled from and pushed to."""
    _run(repo.git_dir, ["config", f"branch.{branch}.remote", remote]).check_returncode()
    _run(repo.git_dir, ["config", f"branch.{branch}.merge", BRANCH_PREFIX + branch]).check_returncode()


def upstream(repo: git.Repo, branch: str) -> str | None:
    done = _run(repo.git_dir, ["config", "--get", f"branch.{branch}.remote"])
    return done.stdout.strip() or None

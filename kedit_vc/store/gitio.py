"""The few git operations the store needs, on a bare repository through gitpython.

Objects (blobs, trees, commits) are written first; they are content-addressed and
written by rename, so a killed writer leaves at most unreachable objects that
``git fsck`` does not count as errors. The branch ref is moved last, by an atomic
rename of a file holding the new sha: HEAD is either the old commit or the new one.
After that, ``pack`` moves the new loose objects into packs (see there).
"""

from __future__ import annotations

import subprocess
from io import BytesIO
from pathlib import Path
from typing import Mapping, Sequence

import git
from git.db import GitCmdObjectDB
from git.objects.fun import tree_to_stream
from gitdb import IStream
from gitdb.db.loose import LooseObjectDB

from kedit_vc.errors import StoreError
from kedit_vc.fsio import atomic_write_text

FILE_MODE = 0o100644


class ObjectDB(GitCmdObjectDB):
    """Reads through git itself; writes loose objects in-process (temporary file + rename).

    gitpython's default ``store`` pipes the data into ``git hash-object --literally``: a
    writer killed mid-pipe makes git store the truncated input (e.g. an empty commit)
    under a valid name, which ``git fsck`` then reports as a bogus object.
    """

    def store(self, istream: IStream) -> IStream:
        return LooseObjectDB.store(self, istream)


def open_repo(path: Path) -> git.Repo:
    return git.Repo(path, odbt=ObjectDB)


def _store(repo: git.Repo, kind: bytes, data: bytes) -> str:
    return repo.odb.store(IStream(kind, len(data), BytesIO(data))).hexsha.decode()


def write_tree(repo: git.Repo, files: Mapping[str, bytes]) -> str:
    """A flat tree of regular files; returns its sha."""
    entries = [(bytes.fromhex(_store(repo, b"blob", data)), FILE_MODE, name) for name, data in sorted(files.items())]
    stream = BytesIO()
    tree_to_stream(entries, stream.write)
    return _store(repo, b"tree", stream.getvalue())


def write_commit(
    repo: git.Repo, tree: str, parents: Sequence[str], message: str, like: git.Commit | None = None
) -> str:
    """A commit object (no ref moves); ``like`` copies an existing commit's author and date."""
    commit = git.Commit.create_from_tree(
        repo,
        repo.tree(tree),
        message,
        parent_commits=[repo.commit(p) for p in parents],
        head=False,
        author=like.author if like else None,
        author_date=like.authored_datetime if like else None,
    )
    return commit.hexsha


def read_files(repo: git.Repo, sha: str) -> dict[str, git.Blob]:
    """The files of a commit's (flat) tree by name, read lazily."""
    return {blob.name: blob for blob in repo.commit(sha).tree.blobs}


def message_text(commit: git.Commit) -> str:
    """A commit's message as text (GitPython types it str | bytes)."""
    message = commit.message
    return message if isinstance(message, str) else message.decode("utf-8", "replace")


def blob_bytes(blob: git.Blob) -> bytes:
    return blob.data_stream.read()


def branch_ref(repo: git.Repo) -> str:
    """The ref HEAD points to (e.g. ``refs/heads/main``); a detached HEAD is refused."""
    try:
        return repo.git.symbolic_ref("-q", "HEAD")
    except git.GitCommandError:
        raise StoreError(
            f"HEAD of {repo.git_dir} is detached; attach it to a branch "
            f"(git --git-dir={repo.git_dir} checkout <branch>) before writing"
        ) from None


def ref_value(repo: git.Repo, ref: str) -> str | None:
    """The full sha of the commit ``ref`` names, or None (as ``git rev-parse --verify ref^{commit}``).

    A full sha, ``HEAD`` and ``refs/...`` names are answered from the refs files and
    packed-refs, checked to be commits through gitpython's persistent ``cat-file``
    process; anything else, or anything that fast path cannot settle, asks git itself.
    """
    sha = _fast_ref_value(repo, ref)
    if sha is not None:
        return sha
    try:
        return repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
    except git.GitCommandError:
        return None


def _is_full_sha(text: str) -> bool:
    return len(text) == 40 and all(c in "0123456789abcdef" for c in text)


def _fast_ref_value(repo: git.Repo, ref: str) -> str | None:
    """A commit sha read without spawning git, or None when git must decide."""
    try:
        if _is_full_sha(ref):
            sha: str | None = ref
        elif ref == "HEAD" or ref.startswith("refs/"):
            sha = _read_ref(Path(repo.git_dir), ref, depth=0)
        else:
            return None
        if sha is None:
            return None
        kind = repo.odb.info(bytes.fromhex(sha)).type
        if (kind.decode() if isinstance(kind, bytes) else kind) != "commit":
            return None
        return sha
    except Exception:  # noqa: BLE001 - missing object, odd ref file, ...: let git answer
        return None


def _read_ref(git_dir: Path, ref: str, depth: int) -> str | None:
    """A ref's sha from its loose file (which wins, as in git) or packed-refs."""
    if depth > 5 or ".." in ref or (git_dir / "commondir").exists():
        return None
    path = git_dir / ref
    if path.is_file():
        text = path.read_text().strip()
        if text.startswith("ref: "):
            return _read_ref(git_dir, text[5:].strip(), depth + 1)
        return text if _is_full_sha(text) else None
    if not ref.startswith("refs/"):
        return None
    packed = git_dir / "packed-refs"
    if not packed.is_file():
        return None
    for line in packed.read_text().splitlines():
        if line and line[0] not in "#^":
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha if _is_full_sha(sha) else None
    return None


def set_ref(repo: git.Repo, ref: str, new: str, expected_old: str | None, tmp_dir: Path) -> None:
    """Point ``ref`` at ``new`` if it still points at ``expected_old`` (atomic rename).

    Written as a loose ref, which takes precedence over packed-refs, as git itself does.
    Callers hold the store lock, which serialises kvc writers.
    """
    current = ref_value(repo, ref)
    if current != expected_old:
        raise StoreError(f"{ref} moved from {expected_old} to {current} during the write; run the command again")
    path = Path(repo.git_dir) / ref
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, new + "\n", tmp_dir)


def refs_under(repo: git.Repo, prefix: str) -> dict[str, str]:
    out = repo.git.for_each_ref("--format=%(refname) %(objectname)", prefix)
    return dict(line.split(" ", 1) for line in out.splitlines() if line)


#: ``git repack`` as the store runs it after each write (git >= 2.32 for ``--geometric``).
REPACK = ("-c", "repack.writeBitmaps=false", "-c", "pack.threads=1", "repack", "-d", "-n", "-q")


def pack(repo: git.Repo, keep_fds: Sequence[int] = ()) -> None:
    """Roll the loose objects and the small packs up into packs (``git repack --geometric=2``).

    One commit writes about eight loose objects, each a file of its own rounded up to a 4 KiB
    block: 32 KiB on disk for a rank-one edit whose content is 15 KiB. Packed, it takes
    its content. ``--geometric=2`` merges only the packs that break a factor-2 progression of
    object counts, so a store keeps about log2(commits) packs and each object is rewritten
    O(log n) times over the store's life: a few tens of milliseconds per write, whatever
    the history's length (``git gc --auto`` would wait for ~6,700 loose objects, and runs
    detached, outliving the writer lock).

    git writes each pack under a temporary name, fsyncs it, renames it into place, and
    only then deletes what it replaces, so a kill at any moment leaves duplicates or a
    temporary file, never a missing object. ``keep_fds``: the writer lock's descriptor, so
    a killed writer's repack keeps the lock until it is done. Raises ``CalledProcessError``.
    """
    base = ["git", f"--git-dir={repo.git_dir}", *REPACK]
    done = subprocess.run([*base, "--geometric=2"], capture_output=True, pass_fds=tuple(keep_fds))
    if done.returncode != 0 and b"geometric" in done.stderr:  # git < 2.32: all loose objects, one new pack
        done = subprocess.run(base, capture_output=True, pass_fds=tuple(keep_fds))
    done.check_returncode()


def pack_temporaries(repo: git.Repo) -> list[Path]:
    """Temporary files an interrupted ``git repack`` leaves (delete only under the writer lock)."""
    folder = Path(repo.git_dir) / "objects" / "pack"
    return [p for pattern in (".tmp-*", "tmp_*") for p in folder.glob(pattern) if p.is_file()]


def stray_files(repo: git.Repo) -> list[Path]:
    """What killed writers leave in the repository: gitdb's temporary objects and an
    interrupted repack's files. Only safe to delete under the store's writer lock."""
    loose = [p for p in (Path(repo.git_dir) / "objects").glob("obj*") if p.is_file()]
    return loose + pack_temporaries(repo)

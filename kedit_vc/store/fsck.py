"""Checking a store end to end: git objects, manifests, delta hashes, base fingerprint,
and the HEAD cache.

Each problem is one line naming the commit and what is wrong. Unreachable objects and
stray temporary files (what a killed writer leaves) are not problems, nor is a HEAD cache
for another commit than HEAD (it is ignored and rebuilt at the next checkout); a cache for
HEAD that is unreadable or differs from the history is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

from kedit_vc.errors import KvcError

from . import gitio, headcache
from .manifest import manifest_problems

if TYPE_CHECKING:
    from .store import Store


#: git config key set by ``kvc gc --prune-squashed``: squashes' kept histories were let go.
PRUNED_SQUASHED_KEY = "kvc.prunedsquashed"


def mark_squashed_pruned(store: "Store") -> None:
    store.repo.git.config(PRUNED_SQUASHED_KEY, "true")


def squashed_pruned(store: "Store") -> bool:
    """Whether this store let its squashes' kept histories go (then a missing one is no problem)."""
    status, out, _ = store.repo.git.config("--get", PRUNED_SQUASHED_KEY, with_extended_output=True,
                                           with_exceptions=False)
    return status == 0 and out.strip() == "true"


def _git_fsck(store: "Store") -> list[str]:
    status, out, err = store.repo.git.fsck(
        "--no-dangling", "--no-progress", with_extended_output=True, with_exceptions=False
    )
    if status == 0:
        return []
    lines = [line for line in (out + "\n" + err).splitlines() if line.strip()]
    return [f"git fsck: {line}" for line in lines] or [f"git fsck exited with {status}"]


def _commit_problems(store: "Store", chain: list[str], index: int, kept_required: bool = True) -> list[str]:
    sha = chain[index]
    tag = f"commit {sha[:10]}"
    try:
        record = store.read_commit(sha)
    except KvcError as error:
        return [f"{tag}: {error}"]
    manifest = record.manifest
    problems = [f"{tag}: {p}" for p in manifest_problems(manifest)]
    if problems:
        return problems
    parent = chain[index - 1] if index else None
    if manifest["parent"] != parent or record.parents[:1] != ((parent,) if parent else ()):
        problems.append(f"{tag}: manifest parent {manifest['parent']} differs from the git parent {parent}")
    if (index == 0) != (record.op == "init"):
        problems.append(f"{tag}: only the root commit may be (and must be) the init commit")
    if manifest["base"].get("fingerprint") != store.fingerprint:
        problems.append(f"{tag}: made for base fingerprint {manifest['base'].get('fingerprint')}, not the store's")
    try:
        delta = record.delta()
        if record.manifest.get("keys"):
            record.keys()
        record.carried()  # checked against the manifest's names and hash
        patches = record.patches()  # each decoded by its kind and checked against its hash
    except KvcError as error:
        return problems + [f"{tag}: {error}"]
    if record.op == "revert":
        target = record.reverts
        if target not in chain[:index]:
            problems.append(f"{tag}: reverts {target}, which is not earlier in the history")
        else:
            try:
                inverse = store.read_commit(target).delta().inverse()  # type: ignore[union-attr]
            except KvcError:
                inverse = None  # reported at the target itself
            if inverse is not None and delta is not None and inverse.content_hash() != delta.content_hash():
                problems.append(f"{tag}: its delta is not the exact inverse of {target[:10]}'s")
            target_hashes = [p.get("hash") for p in store.manifest(target).get("patches") or ()]
            if [p.content_hash() for p in patches] != target_hashes:
                problems.append(f"{tag}: its patches are not a copy of {target[:10]}'s")
    if record.op == "merge" and record.parents[1:] != (manifest.get("merge_parent"),):
        problems.append(f"{tag}: manifest merge_parent {manifest.get('merge_parent')} differs from the git "
                        f"second parent {record.parents[1:]}")
    if record.op == "squash" and kept_required:
        kept = record.squash.get("kept_at") if record.squash else None
        if not kept or (gitio.ref_value(store.repo, kept) is None and not squashed_pruned(store)):
            problems.append(f"{tag}: the squashed history ref {kept} is missing")
    return problems


def _head_cache_problems(store: "Store", head: str) -> list[str]:
    path = store.paths.head_cache
    if not path.exists():
        return []
    fix = "it is ignored; `kvc fsck --repair` rebuilds it"
    try:
        cached = headcache.load(path)
    except (KvcError, OSError) as error:
        return [f"HEAD cache: {error}; {fix}"]
    if cached.commit != head or cached.fingerprint != store.fingerprint:
        return []
    try:
        fresh = headcache.build(head, store.fingerprint, store._live_pairs(head))
    except KvcError:
        return []  # the history's own problem, reported at its commit
    return [f"HEAD cache {path}: {line}; {fix}" for line in headcache.differences(cached, fresh)]


def fsck(store: "Store") -> list[str]:
    """Every problem found in ``store`` (an empty list: the store is sound)."""
    problems = _git_fsck(store)
    try:
        store.config  # noqa: B018 - reading the config checks it
        chain = store.chain("HEAD")
    except KvcError as error:
        return problems + [str(error)]
    for index in range(len(chain)):
        problems += _commit_problems(store, chain, index)
    for ref, sha in store.squashed_refs().items():
        if gitio.ref_value(store.repo, sha) is None:
            problems.append(f"{ref} points to {sha}, which is not a commit")
    if chain:
        problems += _head_cache_problems(store, chain[-1])
    return problems


def missing_kept(store: "Store", shas: Iterable[str], refs: Mapping[str, str]) -> list[str]:
    """The kept-history refs that squash commits among ``shas`` name and neither ``refs`` nor
    the store holds."""
    out = []
    for sha in shas:
        record = store.read_commit(sha)
        kept = record.squash.get("kept_at") if record.op == "squash" and record.squash else None
        if kept and kept not in refs and gitio.ref_value(store.repo, kept) is None:
            out.append(kept)
    return out


def incoming_problems(store: "Store", tips: Iterable[str], new: set[str]) -> list[str]:
    """Problems of the commits in ``new`` (received from a remote, not yet named by any ref
    kvc reads), checked on the first-parent chain of each tip as ``fsck`` checks HEAD's.

    A squash's kept history is not required: a sender that pruned it (``kvc gc
    --prune-squashed``) sends none (``missing_kept`` finds those). Commits reached only
    through a merge's other parents are checked on their own chains.
    """
    problems: list[str] = []
    seen: set[str] = set()
    pending = list(tips)
    while pending:
        tip = pending.pop(0)
        try:
            chain = store.chain(tip)
        except KvcError as error:
            return problems + [str(error)]
        for index, sha in enumerate(chain):
            if sha in new and sha not in seen:
                seen.add(sha)
                problems += _commit_problems(store, chain, index, kept_required=False)
        if not pending:  # commits reached only through a merge's other parents: their own chains
            pending = sorted(new - seen)[:1]
    return problems

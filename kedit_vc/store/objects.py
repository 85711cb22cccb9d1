"""Where a commit's delta lives, written and read in one place.

Small deltas, and any without a dense update, go into the commit's git tree as
``delta.safetensors``. A large dense delta (over ``large_delta_bytes``) goes beside git,
content-addressed in ``.kvc/objects/ab/<sha256>.safetensors`` (written atomically, before
any git object names it), and the tree holds ``delta.pointer.json``. Either way the
manifest's ``delta`` entry records ``hash``, ``storage`` ("git" | "object") and ``bytes``,
and loading verifies the content hash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from kedit_vc.errors import StoreError
from kedit_vc.fsio import atomic_write_bytes

from .layout import DELTA_FILE, DELTA_POINTER_FILE, StorePaths, patch_file
from .manifest import dumps

if TYPE_CHECKING:
    from kedit_vc.delta import Delta


class DeltaObjects:
    """Writes and loads the deltas of one store (``paths``)."""

    def __init__(self, paths: StorePaths) -> None:
        self.paths = paths

    def write(self, delta: "Delta", large_delta_bytes: int | None) -> tuple[dict[str, bytes], dict[str, Any]]:
        """Store ``delta``: returns the files for the commit's tree and the manifest's entry."""
        data = delta.to_bytes()
        content = delta.content_hash()
        files: dict[str, bytes] = {}
        limit = large_delta_bytes
        if limit is not None and len(data) > limit and any(u.kind == "dense" for u in delta.updates.values()):
            path = self.paths.object_path(content)
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(path, data, self.paths.tmp)
            storage = "object"
            files[DELTA_POINTER_FILE] = dumps({"format": "kvc-delta-pointer", "hash": content, "bytes": len(data)})
        else:
            storage = "git"
            files[DELTA_FILE] = data
        return files, {"hash": content, "storage": storage, "bytes": len(data)}

    def load(self, sha: str, read_file: Callable[[str], bytes | None], manifest: Mapping[str, Any]) -> "Delta | None":
        """The delta of commit ``sha`` (None for the initial commit), verified against its hash.

        ``read_file(name)``: the bytes of a file of the commit's tree, or None when absent.
        """
        from kedit_vc.delta import Delta

        info = manifest.get("delta")
        if info is None:
            return None
        source = f"the delta of commit {sha[:10]}"
        if info["storage"] == "object":
            path = self.paths.object_path(info["hash"])
            if not path.is_file():
                raise StoreError(
                    f"{source} is missing from {self.paths.objects} (large deltas live beside git, not in it: "
                    f"copy the objects folder from where the commit was made)"
                )
            data = path.read_bytes()
        else:
            tree_data = read_file(DELTA_FILE)
            if tree_data is None:
                raise StoreError(f"{source} is missing: commit {sha[:10]} has no {DELTA_FILE}")
            data = tree_data
        return Delta.from_bytes(data, expected_hash=info["hash"], source=source)


def write_patches(patches: Sequence[Any]) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """The tree files of a commit's non-delta patches (``patch.<i>.<kind>.safetensors``, in
    git: they are small) and the manifest's ``patches`` entries."""
    files: dict[str, bytes] = {}
    entries = []
    for index, patch in enumerate(patches):
        if patch.kind == "delta":
            raise StoreError("a commit's weight delta goes in CommitInput.delta, not among its patches")
        data = patch.to_bytes()
        name = patch_file(index, patch.kind)
        files[name] = data
        entries.append({"kind": patch.kind, "file": name, "hash": patch.content_hash(), "bytes": len(data),
                        "summary": dict(patch.describe())})
    return files, entries


def load_patches(sha: str, read_file: Callable[[str], bytes | None], manifest: Mapping[str, Any]) -> list[Any]:
    """Commit ``sha``'s non-delta patches, each decoded by its kind and verified against its hash."""
    from kedit_vc.patches import decode

    out = []
    for entry in manifest.get("patches") or ():
        source = f"{entry['file']} of commit {sha[:10]}"
        data = read_file(entry["file"])
        if data is None:
            raise StoreError(f"{source} is missing though the manifest lists it; run `kvc fsck`")
        out.append(decode(entry["kind"], data, entry["hash"], source))
    return out

"""The kvc store: edits versioned in git, one commit per edit, revert or squash.

Layout and the nested-repository question
-----------------------------------------
``kvc init`` creates ``<project>/.kvc/`` (see ``layout``). The history is a *bare* git
repository at ``.kvc/repo.git`` — no working tree, no ``.git`` directory — and
``.kvc/.gitignore`` holds ``*``, so a project that is itself a git repository ignores
the store entirely: no nested repository, no submodule, no accidental ``git add`` of
weights. The base model is recorded (reference + fingerprint in ``store.json``), never
copied.

Each commit's tree holds ``store.json``, ``manifest.json`` (sorted JSON; see
``manifest``), ``spec.kedit``, ``plan.json``, ``metrics.json``, the delta
(``delta.safetensors``, or ``delta.pointer.json`` naming a content-addressed file in
``.kvc/objects/`` for large dense deltas) and optionally ``keys.safetensors`` and
``carried.safetensors`` (carried method state, see ``carried``).

Sharing the history (CI gating)
-------------------------------
``.kvc/repo.git`` is an ordinary repository, so ``git --git-dir=.kvc/repo.git log``,
tags and remotes work. ``kvc remote add/push/pull/clone`` (``remotes``, ``kedit_vc.ops.remote``)
share it through any git remote, carrying the kept squashed history and the large deltas
of ``.kvc/objects`` too, and verify what they receive. By hand, to publish next to the
code, push the store's branch to a branch of the project's own remote, and fetch it back
into a fresh store elsewhere::

    git --git-dir=.kvc/repo.git push <remote-url> main:refs/heads/kvc-history
    # in CI, in the checked-out project:
    mkdir -p .kvc && printf '*\\n' > .kvc/.gitignore
    git clone --bare --branch kvc-history <remote-url> .kvc/repo.git
    kvc fsck && kvc eval --gate

By hand, large dense deltas in ``.kvc/objects`` do not travel with git (like LFS objects):
copy that folder too (e.g. as a CI artifact); ``kvc fsck`` names any that are missing.

Safety
------
One writer at a time (``lock``: flock on ``.kvc/lock``, released by the kernel if the
writer dies; the refusal names the holder's pid). Objects are written before the branch
ref, which moves by an atomic rename (``gitio.set_ref``), so an interrupted write leaves
HEAD at the old or the new commit and ``fsck`` clean. No pickle anywhere.

Speed and size
--------------
After each write, still under the lock, the store advances the HEAD cache
(``.kvc/cache/head.safetensors``, see ``headcache``: HEAD's live deltas summed, so a
checkout reads one file instead of the whole history; outside git, rebuilt whenever it is
not for HEAD) and packs the new loose objects (``gitio.pack``: ``git repack
--geometric=2``, which hands the lock on to git until it is done). Both happen after the
ref moved and neither can fail the commit.
"""

from .create import init_store, open_store
from .layout import KVC_DIR
from .manifest import CommitInput, StoreConfig
from .records import CommitRecord
from .store import Store

__all__ = ["KVC_DIR", "CommitInput", "CommitRecord", "Store", "StoreConfig", "init_store", "open_store"]

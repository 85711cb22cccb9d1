"""``kvc gc`` on a tiny random Llama: unreachable objects go, everything reachable stays
(fsck clean, same history and HEAD logits); squashed history stays unless asked."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch

from conftest import run_kvc
from kedit_vc.store import CommitInput, Store, init_store
from vcs_helpers import cheap_delta, commit_delta, head_logits


@pytest.fixture(scope="module")
def tiny_fingerprint(tiny_model_dir) -> str:
    from kedit_vc.models import load_model

    return load_model(str(tiny_model_dir), progress=False).fingerprint


def gc_json(*args: str) -> dict:
    result = run_kvc("gc", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def exists(store: Store, sha: str) -> bool:
    return subprocess.run(["git", f"--git-dir={store.repo.git_dir}", "cat-file", "-e", sha]).returncode == 0


def test_gc_prunes_only_what_nothing_reaches(project, tiny_model_dir, tiny_fingerprint):
    with init_store(project, str(tiny_model_dir), tiny_fingerprint, large_delta_bytes=4096) as store:
        for seed in range(4):
            commit_delta(store, cheap_delta(seed, dense=seed == 3), f"edit {seed}")  # edit 3: in .kvc/objects
        chain = store.chain()
        store.write_commit(CommitInput("squash", cheap_delta(0).compose(cheap_delta(1)), op="squash",
                                       squash_range=(chain[0], chain[2])))
        store.write_commit(CommitInput("revert", op="revert", reverts=store.chain()[1]))
        old_chain, kept = store.chain(), store.squashed_refs()
        logits = head_logits(store, tiny_model_dir)
    blob = subprocess.run(["git", f"--git-dir={project / '.kvc/repo.git'}", "hash-object", "-w", "--stdin"],
                          input=b"unreachable", capture_output=True, check=True).stdout.decode().strip()
    orphan = project / ".kvc/objects/ab" / ("ab" + "0" * 62 + ".safetensors")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"not referenced")
    with Store(project) as store:
        subprocess.run(["git", f"--git-dir={store.repo.git_dir}", "update-ref", "refs/kvc/incoming/origin/heads/x",
                        old_chain[1]], check=True)  # what a killed pull leaves
        later = commit_delta(store, cheap_delta(9), "later")  # the HEAD cache is now for it
        store.repo.git.update_ref("refs/heads/main", old_chain[-1])  # back: "later" is unreachable
        assert exists(store, blob) and exists(store, later)
        object_files = sorted(p.name for p in store.paths.objects.rglob("*.safetensors"))
    report = gc_json()
    assert report["objects_after"] < report["objects_before"]
    assert report["removed_objects"] == [orphan.stem] and not orphan.exists()
    assert report["removed_head_cache"]
    with Store(project) as store:
        assert not exists(store, blob) and not exists(store, later)
        assert store.chain() == old_chain and store.squashed_refs() == kept
        assert not store.repo.git.for_each_ref("refs/kvc/incoming")
        assert sorted(p.name for p in store.paths.objects.rglob("*.safetensors")) == [
            n for n in object_files if n != orphan.name]
        assert store.fsck() == []
        # the stale cache went, so HEAD's sum is rebuilt: a dense sum differs by float rounding
        torch.testing.assert_close(head_logits(store, tiny_model_dir), logits, rtol=0, atol=1e-5)
        logits = head_logits(store, tiny_model_dir)
        squashed_only = [sha for sha in store.chain(next(iter(kept.values()))) if sha not in old_chain]
        assert squashed_only and all(exists(store, sha) for sha in squashed_only)
    report = gc_json("--prune-squashed")
    assert report["pruned_squashed"] == sorted(kept)
    with Store(project) as store:
        assert store.squashed_refs() == {} and store.chain() == old_chain
        assert not any(exists(store, sha) for sha in squashed_only)
        assert store.fsck() == []  # the store remembers it let them go
        assert torch.equal(head_logits(store, tiny_model_dir), logits)

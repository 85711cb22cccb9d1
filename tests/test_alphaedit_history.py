"""History-aware AlphaEdit through the ops API on a tiny Llama: each commit is solved
with the live edits' keys, and a revert takes the reverted edit's keys out of that set."""

from __future__ import annotations

import pytest
import torch
from conftest import write_spec
from test_cli_store import EIFFEL, FRANCE, TOKYO

TINY_ALPHAEDIT = ("method alphaedit { layers = [1, 2] v_steps = 3 stats_tokens = 2000 context_templates = 2 "
                  "context_length = 4 nullspace_threshold = 0.05 l2 = 0.0001 }")


@pytest.fixture()
def seen(monkeypatch):  # noqa: ANN001, ANN201
    """The preserved keys (layer -> [m, d_mlp]) each AlphaEdit call was given."""
    from kedit_vc.editors.alphaedit.algorithm import AlphaeditEditor

    calls: list[dict[int, torch.Tensor]] = []
    original = AlphaeditEditor.edit

    def spy(self, model, tokenizer, requests, hparams, context):  # noqa: ANN001, ANN202
        calls.append({k: v.clone() for k, v in context.preserved_keys.items()})
        return original(self, model, tokenizer, requests, hparams, context)

    monkeypatch.setattr(AlphaeditEditor, "edit", spy)
    return calls


def _commit(store, name: str, body: str) -> str:  # noqa: ANN001
    from kedit_vc.ops import CommitOptions, commit_spec

    return commit_spec(store, write_spec(store.paths.root, name, body, method=TINY_ALPHAEDIT), CommitOptions()).sha


def test_revert_takes_the_edit_keys_out_of_the_preserved_set(store, seen) -> None:  # noqa: ANN001
    from kedit_vc.ops import revert

    first = _commit(store, "a.kedit", EIFFEL)
    second = _commit(store, "b.kedit", FRANCE)
    keys_a, keys_b = store.read_commit(first).keys(), store.read_commit(second).keys()
    assert set(keys_a) == set(keys_b) == {1, 2} and keys_a[1].shape == (1, 128)
    # The second commit was solved knowing the first; the store now holds both.
    assert seen[0] == {} and all(torch.equal(seen[1][layer], keys_a[layer]) for layer in (1, 2))
    assert store.live_keys()[1].shape == (2, 128)

    revert(store, first)
    live = store.live_keys()
    assert all(torch.equal(live[layer], keys_b[layer]) for layer in (1, 2))
    _commit(store, "c.kedit", TOKYO)
    assert all(torch.equal(seen[2][layer], keys_b[layer]) for layer in (1, 2))


def test_revert_of_a_revert_brings_the_keys_back(store, seen) -> None:  # noqa: ANN001
    from kedit_vc.ops import revert

    first = _commit(store, "a.kedit", EIFFEL)
    keys_a = store.read_commit(first).keys()
    revert(store, first)
    assert store.live_keys() == {}
    revert(store, "HEAD")
    assert torch.equal(store.live_keys()[1], keys_a[1])

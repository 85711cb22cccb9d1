"""Explain an edit: a commit in the store, or a spec's edits made in memory.

Both give ``Explanation``s (``kedit_vc.interpret``, which only reads models) for the
model state just before the edit ("before") and with its delta added ("after"). Moving
weights through history is ``ops.weights``' job; this module picks the state and the
requests.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Sequence

from kedit_vc.editors.base import EditContext, get_editor
from kedit_vc.editors.registry import build_hparams
from kedit_vc.errors import UsageError
from kedit_vc.interpret.explain import Explanation, applied, explain_edit

from .history import commit_requests, source_commit
from .weights import Weights

if TYPE_CHECKING:
    from kedit_vc.compiler.plan import EditRequest, Plan
    from kedit_vc.models import LoadedModel
    from kedit_vc.store import Store


def _selected(requests: "Sequence[EditRequest]", edit_id: str | None) -> "list[EditRequest]":
    """All requests, or those whose id starts with ``edit_id``."""
    return [r for r in requests if edit_id is None or r.edit_id.startswith(edit_id)]


def _require(found: list[Explanation], edit_id: str | None, where: str) -> list[Explanation]:
    if not found:
        raise UsageError(f"no edit {edit_id!r} in {where}" if edit_id else f"no edits to explain in {where}")
    return found


def explain_revision(store: "Store", rev: str, loaded: "LoadedModel", *, edit_id: str | None = None,
                     **options: Any) -> list[Explanation]:
    """Explain commit ``rev``: before = its parent's weights (base + live deltas), after = + its delta.

    ``loaded`` must be the store's base model at base weights (see ``ops.weights.load_base``);
    its weights are back at base on return. A commit with several edits has one delta:
    "after" is the whole commit, read at each edit's own prompt. A revert shows the
    reverted edits going away.
    """
    store.check_base(loaded.fingerprint)
    record = store.read_commit(rev)
    delta = record.delta()
    if delta is None:
        raise UsageError(f"commit {record.short} changes no weights (it is the initial commit)")
    if record.patch_kinds:
        raise UsageError(f"commit {record.short} holds {', '.join(record.patch_kinds)} patches, not only weight "
                         "changes, and explain reads weight changes; compare its predictions with "
                         f"`kvc diff {record.short}~1 {record.short} --eval`")
    requests = commit_requests(store, record.sha)
    if not requests and record.reverts and source_commit(store, record.sha) is None:
        requests = commit_requests(store, record.reverts)  # a revert: explain the edits it removes
    weights = Weights(loaded.model)
    try:
        if record.parents:  # the parent revision, as load_edited gives it (its codebooks attached)
            weights.set_revision(store, record.parents[0])
        found = [explain_edit(loaded.model, loaded.tokenizer, request, delta, **options)
                 for request in _selected(requests, edit_id)]
    finally:
        weights.reset()
    return _require(found, edit_id, f"commit {record.short}")


def explain_plan(plan: "Plan", loaded: "LoadedModel", *, edit_id: str | None = None,
                 **options: Any) -> list[Explanation]:
    """Run ``plan``'s editor calls in memory, in order, and explain each selected edit.

    Each call sees the earlier calls' deltas, as ``ops.commit`` runs them; the model's
    weights are unchanged on return.
    """
    found: list[Explanation] = []
    with ExitStack() as stack:
        for call in plan.calls:
            chosen = _selected(call.requests, edit_id)
            if not chosen:
                continue
            context = EditContext(fingerprint=loaded.fingerprint, progress=False)
            delta = get_editor(call.method).edit(loaded.model, loaded.tokenizer, call.requests,
                                                 build_hparams(call.method, call.hparams), context).delta
            found += [explain_edit(loaded.model, loaded.tokenizer, request, delta, **options) for request in chosen]
            stack.enter_context(applied(loaded.model, delta))
    return _require(found, edit_id, "the spec")

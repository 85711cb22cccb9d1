"""The ops API: materialising history, live edits and supersession, the score cache,
history-aware editing, and exact reverts, on a tiny random Llama."""

from __future__ import annotations

import torch
from conftest import TINY_MEMIT, write_spec
from test_cli_store import EIFFEL, EIFFEL_BERLIN, FRANCE, TOKYO


def commit(store, name, body, **options):
    from kedit_vc.ops import CommitOptions, commit_spec

    return commit_spec(store, write_spec(store.paths.root, name, body), CommitOptions(**options))


def base_state(tiny_model_dir) -> dict[str, torch.Tensor]:
    from kedit_vc.models import load_model

    return {k: v.clone() for k, v in load_model(str(tiny_model_dir)).model.state_dict().items()}


def test_commit_records_spec_plan_metrics_keys_and_delta(store):
    result = commit(store, "a.kedit", EIFFEL)
    record = store.read_commit("HEAD")
    assert record.sha == result.sha and record.spec_text.endswith(EIFFEL + "\n")
    assert record.plan["calls"][0]["requests"][0]["subject"] == "Eiffel Tower"
    assert record.metrics["n_edits"] == 1 and "reliability" in record.metrics["pre_metrics"]
    assert record.keys()[1].shape == (1, 128)
    assert record.delta().content_hash() == result.delta.content_hash()
    assert record.manifest["extra"]["efficiency"]["delta_bytes"] == result.delta.summary().stored_bytes


def test_weights_move_between_commits_and_back_exactly(store, tiny_model_dir):
    from kedit_vc.delta import materialize
    from kedit_vc.ops import Evaluator

    commit(store, "a.kedit", EIFFEL)
    commit(store, "b.kedit", FRANCE)
    evaluator = Evaluator(store)
    base = base_state(tiny_model_dir)
    evaluator.move_to(store.head())
    params = evaluator.loaded.model.state_dict()
    expected = materialize(store.live_deltas())
    for name, value in expected.items():
        torch.testing.assert_close(params[name], base[name] + value)
    evaluator.to_base()
    for name in expected:
        assert torch.equal(params[name], base[name])


def test_revert_returns_the_weights_to_the_base(store, tiny_model_dir):
    from kedit_vc.ops import Evaluator, revert

    commit(store, "a.kedit", EIFFEL)
    result = revert(store, "HEAD")
    assert result.restored == {store.read_commit("HEAD~1").edit_ids[0]: True}
    assert store.live_commits() == []
    evaluator = Evaluator(store)
    evaluator.move_to(store.head())
    base = base_state(tiny_model_dir)
    for name, value in evaluator.loaded.model.state_dict().items():
        assert torch.equal(value, base[name]), name


def test_live_edits_follow_supersede_and_revert(store):
    from kedit_vc.ops import live_edits, revert

    commit(store, "a.kedit", EIFFEL)
    commit(store, "c.kedit", EIFFEL_BERLIN, supersede=True)
    assert [e.request.target_new for e in live_edits(store)] == ["Berlin"]
    revert(store, "HEAD")
    assert [e.request.target_new for e in live_edits(store)] == ["Rome"]
    revert(store, "HEAD")  # the revert of a revert brings Berlin back
    assert [e.request.target_new for e in live_edits(store)] == ["Berlin"]


def test_cached_scores_need_no_model(store):
    from kedit_vc.ops import Evaluator

    commit(store, "a.kedit", EIFFEL)
    first = Evaluator(store).evaluate()
    again = Evaluator(store)
    second = again.evaluate()
    assert again._loaded is None  # served from .kvc/cache without loading the model
    assert second.report.to_json() == first.report.to_json()
    assert (store.paths.kvc / "cache" / "scores").is_dir()


def test_history_aware_editors_get_the_live_keys(store, monkeypatch):
    from kedit_vc.editors.memit.algorithm import MemitEditor

    commit(store, "a.kedit", EIFFEL)
    seen = []
    original = MemitEditor.edit

    def spy(self, model, tokenizer, requests, hparams, context):
        seen.append({k: v.shape for k, v in context.preserved_keys.items()})
        return original(self, model, tokenizer, requests, hparams, context)

    monkeypatch.setattr(MemitEditor, "edit", spy)
    from kedit_vc.ops import CommitOptions, commit_spec

    commit_spec(store, write_spec(store.paths.root, "b.kedit", FRANCE, method=TINY_MEMIT), CommitOptions())
    assert seen == [{1: (1, 128)}]
    assert store.live_keys()[1].shape == (2, 128) and store.live_keys()[2].shape == (1, 128)


def test_method_override_drops_foreign_hparams_and_merges_calls():
    from kedit_vc.compiler import compile_text
    from kedit_vc.ops.plans import override

    plan = compile_text(f"method rome {{ layer = 1 }}\n{EIFFEL}\n{TOKYO}\n"
                        'edit "France" prompt "The capital of {subject} is": "Paris" -> "Madrid" {\n'
                        "    method rome { v_steps = 3 }\n}\n")
    assert len(plan.calls) == 2
    memit = override(plan, "memit", {"v_steps": 3})
    assert [(c.method, dict(c.hparams), len(c.requests)) for c in memit.calls] == [("memit", {"v_steps": 3}, 3)]


def test_an_editor_sees_the_carried_state_of_the_live_commits(store, monkeypatch):
    """A throwaway editor (ROME plus carried contributions) sees, at each commit, the sum of
    what the live commits carried; a reverted commit's contribution is gone."""
    from dataclasses import replace

    from kedit_vc.editors.rome.algorithm import RomeEditor
    from kedit_vc.ops import revert

    seen: list[dict[str, list[float]]] = []
    original = RomeEditor.edit
    step = iter([1.0, 10.0, 100.0])

    def carrying(self, model, tokenizer, requests, hparams, context):
        seen.append({name: tensor.tolist() for name, tensor in context.carried.items()})
        result = original(self, model, tokenizer, requests, hparams, context)
        value = next(step)
        return replace(result, carried={"toy/sum": torch.tensor([value, 2 * value]), "toy/count": torch.ones(1)})

    monkeypatch.setattr(RomeEditor, "edit", carrying)
    first = commit(store, "a.kedit", EIFFEL)
    commit(store, "b.kedit", FRANCE)
    revert(store, first.sha)
    commit(store, "c.kedit", TOKYO)
    assert seen == [{}, {"toy/count": [1.0], "toy/sum": [1.0, 2.0]}, {"toy/count": [1.0], "toy/sum": [10.0, 20.0]}]
    state = store.carried_state()
    assert state["toy/sum"].tolist() == [110.0, 220.0] and state["toy/count"].tolist() == [2.0]
    assert store.fsck() == []


def test_each_call_of_a_plan_sees_the_earlier_calls_carried_state(store, monkeypatch):
    from dataclasses import replace

    from kedit_vc.editors.rome.algorithm import RomeEditor

    seen: list[dict[str, list[float]]] = []
    original = RomeEditor.edit

    def carrying(self, model, tokenizer, requests, hparams, context):
        seen.append({name: tensor.tolist() for name, tensor in context.carried.items()})
        result = original(self, model, tokenizer, requests, hparams, context)
        return replace(result, carried={"toy/count": torch.tensor([float(len(requests))])})

    monkeypatch.setattr(RomeEditor, "edit", carrying)
    two_calls = (f"{EIFFEL}\n" 'edit "France" prompt "The capital of {subject} is": "Paris" -> "Madrid" {\n'
                 "    method rome { v_steps = 4 }\n}\n")
    result = commit(store, "two.kedit", two_calls)
    assert len(result.plan.calls) == 2
    assert seen == [{}, {"toy/count": [1.0]}]
    assert store.read_commit("HEAD").carried()["toy/count"].tolist() == [2.0]

"""Delta algebra: apply, inverse, compose, materialize, summary."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from delta_strategies import SHAPES, deltas, toy_model
from kedit_vc.delta import Delta, DeltaError, Dense, LowRank, materialize
from kedit_vc.errors import KvcError


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def dense_sum(items, name):
    found = [d.dense(name) for d in items if name in d.updates]
    return sum(found[1:], found[0].clone())


@settings(max_examples=60, deadline=None)
@given(deltas(), st.floats(-2, 2))
def test_apply_then_inverse_restores_weights(delta, alpha):
    model = toy_model()
    before = weights(model)
    delta.apply(model, alpha)
    delta.inverse().apply(model, alpha)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], atol=1e-6, rtol=0)


@settings(max_examples=40, deadline=None)
@given(deltas(), st.floats(-2, 2))
def test_apply_adds_alpha_times_dense(delta, alpha):
    model = toy_model()
    before = weights(model)
    delta.apply(model, alpha)
    for name, value in model.state_dict().items():
        expected = before[name] + alpha * delta.dense(name) if name in delta.updates else before[name]
        torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(deltas(), deltas())
def test_compose_equals_sum_of_denses(a, b):
    c = a.compose(b)
    assert set(c.updates) == set(a.updates) | set(b.updates)
    for name, update in c.updates.items():
        torch.testing.assert_close(update.dense(), dense_sum([a, b], name), atol=1e-6, rtol=1e-6)
        kinds = {d.updates[name].kind for d in (a, b) if name in d.updates}
        assert update.kind == ("lowrank" if kinds == {"lowrank"} else "dense")
        if kinds == {"lowrank"}:
            assert update.rank == sum(d.updates[name].rank for d in (a, b) if name in d.updates)


@settings(max_examples=40, deadline=None)
@given(st.lists(deltas(), min_size=1, max_size=8))
def test_materialize_equals_sum_of_denses(items):
    total = materialize(items)
    names = {n for d in items for n in d.updates}
    assert list(total) == sorted(names)
    for name in names:
        torch.testing.assert_close(total[name], dense_sum(items, name), atol=1e-5, rtol=1e-5)


@given(deltas())
def test_double_inverse_is_bitwise_identical(delta):
    assert delta.inverse().inverse().content_hash() == delta.content_hash()


def test_materialize_concatenates_factors_once():
    gen = torch.Generator().manual_seed(0)
    items = [Delta({"w": LowRank(torch.randn(50, 1, generator=gen), torch.randn(30, 1, generator=gen))})
             for _ in range(300)]
    total = materialize(items)["w"]
    expected = sum(d.dense("w") for d in items)
    torch.testing.assert_close(total, expected, atol=1e-4, rtol=1e-5)


def test_unknown_parameter_is_refused_before_any_change():
    model = toy_model()
    before = weights(model)
    good = "h.0.mlp.c_proj.weight"
    delta = Delta({good: Dense(torch.ones(SHAPES[good])), "model.layers.1.mlp.down_proj.weigth": Dense(torch.ones(3, 7))})
    with pytest.raises(DeltaError, match=r"down_proj\.weigth.*did you mean.*down_proj\.weight"):
        delta.apply(model)
    assert isinstance(DeltaError("x"), KvcError)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])


def test_shape_mismatch_is_refused():
    model = toy_model()
    with pytest.raises(DeltaError, match="shape"):
        Delta({"h.0.mlp.c_proj.weight": LowRank(torch.ones(4, 1), torch.ones(6, 1))}).apply(model)


def test_apply_keeps_the_parameter_dtype():
    model = toy_model(dtype=torch.bfloat16)
    delta = Delta({"h.0.mlp.c_proj.weight": LowRank(torch.ones(6, 1), torch.full((4, 1), 0.5))})
    before = weights(model)["h.0.mlp.c_proj.weight"]
    delta.apply(model)
    after = model.state_dict()["h.0.mlp.c_proj.weight"]
    assert after.dtype == torch.bfloat16
    torch.testing.assert_close(after, (before.float() + 0.5).bfloat16())


def test_summary_of_a_rank_one_down_proj_edit():
    delta = Delta({"model.layers.4.mlp.down_proj.weight": LowRank(torch.randn(576, 1), torch.randn(1536, 1))})
    summary = delta.summary()
    (tensor,) = summary.tensors
    assert tensor.shape == (576, 1536) and tensor.rank == 1 and tensor.kind == "lowrank"
    assert tensor.stored_bytes == 2112 * 4 and tensor.dense_bytes == 576 * 1536 * 4
    assert tensor.norm == pytest.approx(float(delta.dense(tensor.name).double().norm()), rel=1e-5)
    data = json.loads(json.dumps(summary.to_json()))
    assert data["totals"] == {"tensors": 1, "norm": summary.norm, "stored_bytes": 8448, "dense_bytes": 3538944}


def test_dense_summary_has_no_rank():
    summary = Delta({"b": Dense(torch.ones(3))}).summary()
    assert summary.tensors[0].rank is None and summary.norm == pytest.approx(3 ** 0.5)


def test_dense_of_unknown_name():
    with pytest.raises(DeltaError, match="does not update"):
        Delta({"b": Dense(torch.ones(3))}).dense("c")


@pytest.mark.parametrize(
    "left,right",
    [(torch.ones(3), torch.ones(4, 1)), (torch.ones(3, 2), torch.ones(4, 1)), (torch.ones(3, 1), torch.ones(4, 1).double()),
     (torch.ones(3, 0), torch.ones(4, 0))],
)
def test_lowrank_validates_factors(left, right):
    with pytest.raises(ValueError):
        LowRank(left, right)


def test_delta_is_immutable_and_sorted():
    delta = Delta({"b": Dense(torch.ones(1)), "a": Dense(torch.ones(1))}, {"z": "1", "a": "2"})
    assert list(delta.updates) == ["a", "b"] and list(delta.meta) == ["a", "z"]
    with pytest.raises(TypeError):
        delta.updates["c"] = Dense(torch.ones(1))  # type: ignore[index]
    with pytest.raises(TypeError):
        Delta({"a": torch.ones(1)})  # type: ignore[dict-item]

"""Norm-anchor scaling (NAS) for MEMIT and AlphaEdit: solved value vectors end at the anchor's
norm in their own direction, the anchor is the original model's and stays so as the weights
change, off is today's path, and methods it does not apply to refuse it."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import tiny_family_model, tiny_tokenizer

from kedit_vc.compiler.plan import EditRequest, Probe
from kedit_vc.editors.base import EditContext, get_editor
from kedit_vc.editors.common.anchor import anchor_values, value_norm_anchor
from kedit_vc.editors.common.keys import subject_outputs
from kedit_vc.editors.common.layered import compute_z_targets
from kedit_vc.editors.registry import build_hparams, check_hparams
from kedit_vc.models.families import family_of, mlp_out_weight
from kedit_vc.stats import key_second_moments

TINY = {"layers": [1, 2], "v_steps": 6, "stats_tokens": 600, "context_templates": 2, "context_length": 3}
REQUESTS = [
    EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Paris", "Rome",
                (Probe("rewrite", "The Eiffel Tower is located in the city of", "Paris", "Rome"),)),
    EditRequest("e-2", "Microsoft", "{} was founded by", "Bill Gates", "Steve Jobs",
                (Probe("rewrite", "Microsoft was founded by", "Bill Gates", "Steve Jobs"),)),
]


def _model() -> torch.nn.Module:
    return tiny_family_model("llama", d_model=32, d_mlp=64, vocab=300, layers=3, initializer_range=0.3)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5), anchor=st.floats(0.1, 100.0), seed=st.integers(0, 10_000))
def test_anchored_value_vectors_have_the_anchor_norm_and_keep_their_direction(n: int, anchor: float,
                                                                              seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    v0 = torch.randn(n, 8, generator=generator, dtype=torch.float64) * 5
    delta = torch.randn(n, 8, generator=generator, dtype=torch.float64) * 5
    v_new = v0 + anchor_values(v0, delta, anchor)
    torch.testing.assert_close(v_new.norm(dim=-1), torch.full((n,), anchor, dtype=torch.float64))
    cosine = torch.nn.functional.cosine_similarity(v_new, v0 + delta, dim=-1)
    torch.testing.assert_close(cosine, torch.ones(n, dtype=torch.float64))


def test_a_zero_value_vector_is_left_alone() -> None:
    v0 = torch.tensor([[1.0, 2.0]])
    torch.testing.assert_close(anchor_values(v0, -v0, 3.0), -v0)


def test_the_anchor_is_the_original_rms_value_norm_and_survives_weight_changes(tmp_path) -> None:  # noqa: ANN001
    model, tok = _model(), tiny_tokenizer()
    mom2 = key_second_moments(model, tok, "fp-tiny", [2], 600, stats_dir=str(tmp_path), progress=False)[2].double()
    weight = mlp_out_weight(model, 2).detach().double()
    expected = float(torch.trace(weight @ mom2 @ weight.T).sqrt())
    first = value_norm_anchor(model, tok, "fp-tiny", 2, 600, str(tmp_path), progress=False)
    assert first == pytest.approx(expected, rel=1e-9)
    with torch.no_grad():                     # an edited history: the weights in hand grow
        mlp_out_weight(model, 2).mul_(3.0)
    assert value_norm_anchor(model, tok, "fp-tiny", 2, 600, str(tmp_path), progress=False) == first


def test_nas_targets_put_the_mlp_part_at_the_anchor_norm() -> None:
    model, tok = _model(), tiny_tokenizer()
    hp = build_hparams("memit", TINY)
    family = family_of(model)
    templates = ["{}", "A b c. {}"]
    plain, _ = compute_z_targets(model, tok, REQUESTS, 2, templates, hp, False)
    anchored, info = compute_z_targets(model, tok, REQUESTS, 2, templates, hp, False, anchor=7.5)
    init = subject_outputs(model, tok, REQUESTS, family.block_path(2))
    v0 = subject_outputs(model, tok, REQUESTS, family.mlp_out_path(2))
    v_star = anchored - init + v0                         # the MLP output the anchored target asks for
    torch.testing.assert_close(v_star.norm(dim=-1), torch.full((2,), 7.5), atol=1e-3, rtol=1e-4)
    plain_v = plain - init + v0
    cosine = torch.nn.functional.cosine_similarity(v_star, plain_v, dim=-1)
    assert (cosine > 0.999).all()
    assert info["nas_anchor"] == 7.5


#: NAS by default: on for AlphaEdit (the 1,000-edit sequential run), off for MEMIT (not measured at length).
DEFAULT_NAS = {"memit": False, "alphaedit": True}


@pytest.mark.parametrize("method", ["memit", "alphaedit"])
def test_the_default_is_each_methods_nas_setting_and_the_other_setting_changes_the_edit(method: str,
                                                                                        tmp_path) -> None:  # noqa: ANN001
    model, tok = _model(), tiny_tokenizer()
    context = EditContext(fingerprint="fp-tiny", stats_dir=str(tmp_path), progress=False)
    extra = {"nullspace_threshold": 0.05} if method == "alphaedit" else {}
    editor = get_editor(method)
    default = editor.edit(model, tok, REQUESTS, build_hparams(method, {**TINY, **extra}), context)
    off = editor.edit(model, tok, REQUESTS, build_hparams(method, {**TINY, **extra, "nas": False}), context)
    on = editor.edit(model, tok, REQUESTS, build_hparams(method, {**TINY, **extra, "nas": True}), context)
    assert build_hparams(method, {}).nas is DEFAULT_NAS[method]
    same, other = (on, off) if DEFAULT_NAS[method] else (off, on)
    for name, update in default.delta.updates.items():
        torch.testing.assert_close(same.delta.updates[name].dense(), update.dense(), atol=0, rtol=0)
        assert not torch.allclose(other.delta.updates[name].dense(), update.dense())
    assert ("nas_anchor" in default.info) is DEFAULT_NAS[method] and "nas_anchor" in on.info
    assert "nas_anchor" not in off.info


def test_methods_without_the_flow_refuse_nas_and_the_scale_must_be_positive() -> None:
    assert any("nas" in p for p in check_hparams("pmet", build_hparams("pmet", {"nas": True})))
    assert any("nas_scale" in p for p in check_hparams("memit", build_hparams("memit", {"nas_scale": 0.0})))
    assert check_hparams("alphaedit", build_hparams("alphaedit", {"nas": True})) == []


def test_requests_about_one_subject_share_one_target_and_distinct_subjects_are_unchanged() -> None:
    """MEMIT's flow writes a subject's facts with one vector (as ROME does): separate vectors
    at one key fought in the least squares, and an edit's derived facts undid it."""
    from kedit_vc.editors.common.layered import target_settings
    from kedit_vc.editors.common.targets import optimise_targets

    model, tok = _model(), tiny_tokenizer()
    hp = build_hparams("memit", TINY)
    templates = ["{}", "A b c. {}"]
    country = EditRequest("e-3", "Eiffel Tower", "The {} is in the country of", "Italy", "France",
                          (Probe("rewrite", "The Eiffel Tower is in the country of", "Italy", "France"),))
    targets, _ = compute_z_targets(model, tok, [REQUESTS[0], REQUESTS[1], country], 2, templates, hp, False)
    torch.testing.assert_close(targets[0], targets[2])
    assert not torch.allclose(targets[0], targets[1])
    alone, _ = compute_z_targets(model, tok, REQUESTS, 2, templates, hp, False)
    init, delta, _ = optimise_targets(model, tok, REQUESTS, family_of(model).block_path(2), 3, templates,
                                      target_settings(hp))
    torch.testing.assert_close(alone, init + delta)       # one subject per request: the per-request path

"""AlphaEdit on random matrices and a tiny Llama: the null-space guarantee, the soft
protection of earlier edits, and the cached projection."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kedit_vc.compiler.plan import EditRequest, Probe
from kedit_vc.editors.alphaedit.algorithm import alphaedit_layer_update
from kedit_vc.editors.alphaedit.projection import null_space_projection, null_space_projections
from kedit_vc.editors.base import EditContext, get_editor
from kedit_vc.editors.registry import build_hparams
from kedit_vc.models.families import family_of
from tiny_models import tiny_family_model, tiny_tokenizer

TINY = {"layers": [1, 2], "v_steps": 8, "stats_tokens": 600, "context_templates": 2, "context_length": 3,
        "nullspace_threshold": 0.05}
EIFFEL = EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Paris", "Rome",
                     (Probe("rewrite", "The Eiffel Tower is located in the city of", "Paris", "Rome"),))
MICROSOFT = EditRequest("e-2", "Microsoft", "{} was founded by", "Bill Gates", "Steve Jobs",
                        (Probe("rewrite", "Microsoft was founded by", "Bill Gates", "Steve Jobs"),))
TOKYO = EditRequest("e-3", "Tokyo", "{} is the capital of", "Japan", "China",
                    (Probe("rewrite", "Tokyo is the capital of", "Japan", "China"),))


def _spectrum_moment(d: int, null_dim: int, generator: torch.Generator) -> torch.Tensor:
    """A second moment [d, d] with ``d - null_dim`` large eigenvalues and ``null_dim`` tiny ones."""
    basis, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    values = torch.cat([torch.rand(d - null_dim, generator=generator, dtype=torch.float64) + 1.0,
                        torch.rand(null_dim, generator=generator, dtype=torch.float64) * 1e-4])
    return (basis * values) @ basis.T


def test_projection_spans_the_small_eigenvalues() -> None:
    mom2 = _spectrum_moment(20, 7, torch.Generator().manual_seed(0))
    projection, dim = null_space_projection(mom2, 1e-2)
    assert dim == 7
    torch.testing.assert_close(projection @ projection, projection, atol=1e-10, rtol=0)
    torch.testing.assert_close(projection, projection.T, atol=1e-12, rtol=0)
    # The big-eigenvalue directions (the model's "knowledge") are projected away.
    assert (projection @ mom2 @ projection).trace() < 7 * 1e-4


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 4), m=st.integers(0, 5), alpha=st.floats(1e-3, 1e2), seed=st.integers(0, 1000))
def test_update_solves_its_system_and_spares_the_principal_keys(n: int, m: int, alpha: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    d_model, d_mlp, null_dim = 6, 24, 12
    projection, _ = null_space_projection(_spectrum_moment(d_mlp, null_dim, generator), 1e-2)
    keys = torch.randn(n, d_mlp, generator=generator, dtype=torch.float64)
    residual = torch.randn(n, d_model, generator=generator, dtype=torch.float64)
    preserved = torch.randn(m, d_mlp, generator=generator, dtype=torch.float64)
    left, right = alphaedit_layer_update(keys, residual, projection, alpha, preserved)
    assert left.shape == (d_model, n) and right.shape == (d_mlp, n)
    gram = keys.T @ keys + preserved.T @ preserved
    system = projection @ gram + alpha * torch.eye(d_mlp, dtype=torch.float64)
    torch.testing.assert_close(system @ right, projection @ keys.T, atol=1e-9, rtol=1e-9)
    update = left @ right.T                                            # [d_model, d_mlp]
    # ΔW = ΔW P: any key in the principal subspace (outside the null space) maps as before.
    principal = torch.randn(10, d_mlp, generator=generator, dtype=torch.float64)
    principal = principal - principal @ projection
    scale = update.norm() * principal.norm(dim=1).max()
    assert (principal @ update.T).abs().max() <= 1e-9 * scale


def test_preserved_keys_keep_their_outputs_as_alpha_vanishes() -> None:
    """Keys of earlier edits are protected by the K_pᵀK_p term: with α small against their
    energy in the null space, K_p ΔWᵀ ≈ 0 while the new keys still get their residual."""
    generator = torch.Generator().manual_seed(3)
    d_model, d_mlp = 8, 40
    projection, dim = null_space_projection(_spectrum_moment(d_mlp, 20, generator), 1e-2)
    keys = torch.randn(3, d_mlp, generator=generator, dtype=torch.float64)
    residual = torch.randn(3, d_model, generator=generator, dtype=torch.float64)
    preserved = torch.randn(10, d_mlp, generator=generator, dtype=torch.float64)
    left, right = alphaedit_layer_update(keys, residual, projection, 1e-8, preserved)
    update = left @ right.T
    assert (preserved @ update.T).norm() <= 1e-6 * residual.norm()
    # Only the null-space part of a key can be written; the rest of R is left to other layers.
    written = keys @ update.T
    reachable = residual.T @ torch.linalg.pinv(keys @ projection @ keys.T) @ (keys @ projection @ keys.T)
    torch.testing.assert_close(written, reachable.T, atol=1e-5, rtol=1e-5)
    # Without the preserved keys in the system they would move.
    left, right = alphaedit_layer_update(keys, residual, projection, 1e-8)
    assert (preserved @ (left @ right.T).T).norm() > 1e-2 * residual.norm()


@pytest.fixture(scope="module")
def tok():  # noqa: ANN201
    return tiny_tokenizer()


def _model() -> torch.nn.Module:
    return tiny_family_model("llama", d_model=32, d_mlp=64, vocab=300, layers=3)


def _edit(model, tok, requests, stats_dir, preserved=None, **overrides):  # noqa: ANN001, ANN202
    context = EditContext(fingerprint="tiny-llama", stats_dir=stats_dir, progress=False,
                          preserved_keys=preserved or {})
    hp = build_hparams("alphaedit", {**TINY, **overrides})
    result = get_editor("alphaedit").edit(model, tok, list(requests), hp, context)
    return result.delta, result


def test_editor_end_to_end_spares_statistics_and_earlier_edits(tok, tmp_path) -> None:  # noqa: ANN001
    model = _model()
    family = family_of(model)
    first, result = _edit(model, tok, [EIFFEL, MICROSOFT], str(tmp_path))
    assert set(result.written_keys) == {1, 2} and result.written_keys[1].shape == (2, 64)
    first.apply(model)
    preserved = {layer: keys.clone() for layer, keys in result.written_keys.items()}
    second, result = _edit(model, tok, [TOKYO], str(tmp_path), preserved, l2=1e-10)
    assert result.info["preserved_keys"] == {1: 2, 2: 2}
    projections = null_space_projections(model, tok, "tiny-llama", [1, 2], TINY["stats_tokens"],
                                         TINY["nullspace_threshold"], stats_dir=str(tmp_path))
    for layer in (1, 2):
        update = second.dense(family.mlp_out_weight_name(layer)).double()   # [d_model, d_mlp]
        projection = projections[layer].double()
        assert 0 < round(float(projection.trace())) < 64
        # The update lives in the null space: ΔW (I - P) ≈ 0 (float32 storage).
        assert (update - update @ projection).abs().max() <= 1e-4 * update.abs().max()
        # Earlier edits' keys keep their outputs; the new key's output moves.
        new_key = result.written_keys[layer].double()
        moved = (new_key @ update.T).norm()
        assert moved > 0
        assert (preserved[layer].double() @ update.T).norm() <= 1e-3 * moved


def test_projection_is_cached_beside_the_statistics(tok, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    model = _model()
    first = null_space_projections(model, tok, "tiny-llama", [1], 600, 0.05, stats_dir=str(tmp_path),
                                   progress=False)[1]
    files = sorted(p.name for p in tmp_path.rglob("*.safetensors"))
    assert files == ["layer001-n600-null0.05.safetensors", "layer001-n600.safetensors"]
    monkeypatch.setattr(torch.linalg, "eigh", lambda *a, **k: pytest.fail("recomputed"))
    monkeypatch.setattr(torch.nn.Module, "__call__", lambda *a, **k: pytest.fail("recomputed"))
    again = null_space_projections(model, tok, "tiny-llama", [1], 600, 0.05, stats_dir=str(tmp_path),
                                   progress=False)[1]
    assert torch.equal(first, again)

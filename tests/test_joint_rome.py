"""Joint ROME: ROME's closed form for n keys at once maps every key to its target exactly."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kedit_vc.compiler.plan import EditRequest
from kedit_vc.editors.base import EditContext, get_editor
from kedit_vc.editors.joint_rome import algorithm as joint
from kedit_vc.editors.registry import build_hparams
from kedit_vc.editors.rome.algorithm import rome_update
from kedit_vc.models.families import mlp_out_weight
from tiny_models import tiny_family_model, tiny_tokenizer


def _problem(n: int, seed: int, d_out: int = 6, d_in: int = 16) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    samples = torch.randn(300, d_in, generator=g) * torch.linspace(0.2, 2.0, d_in)
    return (torch.randn(d_out, d_in, generator=g), torch.randn(n, d_in, generator=g),
            torch.randn(n, d_out, generator=g), samples.T @ samples / 300)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_every_key_meets_its_target_and_c_orthogonal_inputs_are_spared(n: int, seed: int) -> None:
    weight, keys, values, mom2 = _problem(n, seed)
    left, right = joint.joint_rome_update(weight, keys, values, mom2, ridge=0.0)
    assert left.shape == (6, n) and right.shape == (16, n)
    new = weight.double() + left @ right.T
    torch.testing.assert_close(keys.double() @ new.T, values.double(), atol=1e-7, rtol=1e-7)
    # An input x with (C⁻¹K)ᵀx = 0 is mapped as before (ROME's constraint, n keys at once).
    x = torch.randn(16, generator=torch.Generator().manual_seed(seed + 1)).double()
    q, _ = torch.linalg.qr(right)
    x = x - q @ (q.T @ x)
    torch.testing.assert_close(new @ x, weight.double() @ x, atol=1e-8, rtol=1e-8)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_one_key_is_rome(seed: int) -> None:
    weight, keys, values, mom2 = _problem(1, seed)
    left, right = joint.joint_rome_update(weight, keys, values, mom2)
    one_left, one_right = rome_update(weight, keys[0], values[0], mom2)
    torch.testing.assert_close(left @ right.T, torch.outer(one_left, one_right), atol=1e-10, rtol=1e-9)


TINY = {"layer": 1, "v_steps": 8, "stats_tokens": 600, "context_templates": 2, "context_length": 3}
REQUESTS = (
    EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris"),
    EditRequest("e-2", "Microsoft", "{} was founded by", "Steve Jobs", "Bill Gates"),
    EditRequest("e-3", "Tokyo", "{} is the capital of", "China", "Japan"),
    EditRequest("e-4", "Tokyo", "{} is located in the country of", "China", "Japan"),
)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_on_a_tiny_model_every_written_key_maps_to_its_target(kind: str, tmp_path, monkeypatch) -> None:
    model = tiny_family_model(kind, d_model=32, d_mlp=64, vocab=300, layers=3)
    seen: dict[str, torch.Tensor] = {}
    real = joint.joint_rome_update

    def spy(weight, keys, values, mom2, ridge=1e-6):  # noqa: ANN001, ANN202
        seen.update(keys=keys.clone(), values=values.clone())
        return real(weight, keys, values, mom2, ridge)

    monkeypatch.setattr(joint, "joint_rome_update", spy)
    context = EditContext(fingerprint=f"tiny-{kind}", stats_dir=str(tmp_path), progress=False)
    result = get_editor("joint_rome").edit(model, tiny_tokenizer(), list(REQUESTS),
                                           build_hparams("joint_rome", TINY), context)
    # One column per subject: the two Tokyo edits share a key and a target.
    assert seen["keys"].shape[0] == 3 and next(iter(result.delta.updates.values())).rank == 3
    torch.testing.assert_close(result.written_keys[1], seen["keys"])
    result.delta.apply(model)
    mapped = seen["keys"].double() @ mlp_out_weight(model, 1).double().T      # [3, d_model]
    scale = seen["values"].abs().max().item()
    torch.testing.assert_close(mapped, seen["values"].double(), atol=1e-4 * scale, rtol=1e-4)

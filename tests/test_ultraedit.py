"""UltraEdit on tiny models: the update is the paper's formula, the lifelong statistics are
additive (so revert restores them), the model is left as found, and an edit takes."""

from __future__ import annotations

import torch

from kedit_vc.compiler.plan import EditRequest, Probe
from kedit_vc.editors.base import EditContext, get_editor
from kedit_vc.editors.registry import build_hparams
from kedit_vc.editors.ultraedit import normalise as norm
from kedit_vc.editors.ultraedit.algorithm import fact_sequences, module_paths, trace_features
from kedit_vc.editors.ultraedit.hparams import resolve
from kedit_vc.eval import score_requests
from kedit_vc.models.families import family_of
from tiny_models import tiny_family_model, tiny_tokenizer

REQUESTS = [
    EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris",
                (Probe("rewrite", "The Eiffel Tower is located in the city of", "Rome", "Paris"),)),
    EditRequest("e-2", "Microsoft", "{} was founded by", "Steve Jobs", "Bill Gates",
                (Probe("rewrite", "Microsoft was founded by", "Steve Jobs", "Bill Gates"),)),
]
HP = {"layers": [1, 2], "modules": ["mlp_in", "mlp_out"], "lr": 1e-3}


def _model(seed: int = 0) -> torch.nn.Module:
    return tiny_family_model("llama", seed=seed, d_model=32, d_mlp=64, vocab=300, layers=3, initializer_range=0.3)


def _edit(model, tok, requests=REQUESTS, carried=None, **over):  # noqa: ANN001, ANN202
    hp = build_hparams("ultraedit", {**HP, **over})
    context = EditContext(fingerprint="tiny", progress=False, carried=carried or {})
    return get_editor("ultraedit").edit(model, tok, requests, hp, context)


def test_update_equals_the_papers_formula_computed_directly():
    torch.manual_seed(0)
    model, tok = _model(), tiny_tokenizer()
    prior = {"ultraedit/32x64/n": torch.tensor([7.0], dtype=torch.float64),
             "ultraedit/32x64/sum": torch.randn(96, dtype=torch.float64),
             "ultraedit/32x64/sumsq": torch.rand(96, dtype=torch.float64) * 50 + 20}
    result = _edit(model, tok, carried=prior)
    hp = resolve(model, build_hparams("ultraedit", HP))
    paths = module_paths(family_of(model), hp)
    feats = trace_features(model, tok, fact_sequences(tok, REQUESTS, hp.raw_copies), paths, "all", 10)
    # The paper, written plainly: running stats over x = [k; g] of every edited matrix of a
    # shape (prior turns + this one), x̂ = (x - μ)/σ, v = -lr |k̂|² ĝ, ΔWᵀ = (KᵀK + I)⁻¹ KᵀV.
    for path, (k, g) in feats.items():
        d_in, d_out = k.shape[1], g.shape[1]
        same_shape = [torch.cat(f, -1).double() for p, f in feats.items()
                      if (f[0].shape[1], f[1].shape[1]) == (d_in, d_out)]
        xs = torch.cat(same_shape)
        name = f"ultraedit/{d_in}x{d_out}"
        n = xs.shape[0] + (prior[f"{name}/n"].item() if f"{name}/n" in prior else 0)
        s1 = xs.sum(0) + (prior[f"{name}/sum"] if f"{name}/n" in prior else 0)
        s2 = (xs ** 2).sum(0) + (prior[f"{name}/sumsq"] if f"{name}/n" in prior else 0)
        mu = s1 / n
        sigma = ((s2 - n * mu ** 2).clamp_min(0) / (n - 1 + torch.finfo(torch.float32).eps)).sqrt()
        x = (torch.cat([k, g], -1).double() - mu) / (sigma + torch.finfo(torch.float32).eps)
        k_hat, g_hat = x[:, :d_in], x[:, d_in:]
        v = -HP["lr"] * (k_hat ** 2).sum(-1, keepdim=True) * g_hat
        kk = k.double()
        expected = torch.linalg.solve(kk.T @ kk + torch.eye(d_in, dtype=torch.float64), kk.T @ v).T
        got = result.delta.dense(f"{path}.weight").double()
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)
    assert any(result.delta.dense(f"{p}.weight").abs().max() > 0 for p in paths)


def test_carried_statistics_are_additive_and_revert_subtracts_exactly():
    model, tok = _model(), tiny_tokenizer()
    # One sequence per pass, so a fact's features do not depend on the others in its batch.
    first = _edit(model, tok, REQUESTS[:1], batch_size=1).carried
    second = _edit(model, tok, REQUESTS[1:], batch_size=1).carried
    both = _edit(model, tok, REQUESTS, batch_size=1).carried
    summed = norm.add(first, second)
    assert summed.keys() == both.keys()
    for name in both:
        torch.testing.assert_close(summed[name], both[name].double(), rtol=1e-9, atol=1e-6)
    # Reverting the second turn (subtracting its contribution) gives the first's state.
    back = norm.add(summed, {k: -v for k, v in second.items()})
    for name in first:
        torch.testing.assert_close(back[name], first[name].double(), rtol=1e-9, atol=1e-6)


def test_edit_leaves_the_model_as_found_and_makes_the_new_object_likelier():
    model, tok = _model(), tiny_tokenizer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pre = score_requests(model, tok, REQUESTS)
    result = _edit(model, tok, lr=0.05)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    result.delta.apply(model)
    post = score_requests(model, tok, REQUESTS)
    nll = lambda scores: [e.probes[0].target_nll for e in scores.edits]  # noqa: E731
    assert all(a < b - 0.1 for a, b in zip(nll(post), nll(pre))), (nll(pre), nll(post))


def test_the_carried_state_changes_the_next_edit():
    model, tok = _model(), tiny_tokenizer()
    alone = _edit(model, tok, REQUESTS[1:]).delta
    history = _edit(model, tok, REQUESTS[:1]).carried
    after = _edit(model, tok, REQUESTS[1:], carried=history).delta
    name = next(iter(alone.updates))
    assert not torch.allclose(alone.dense(name), after.dense(name))


def test_the_traced_gradients_are_those_of_the_whole_models_answer_loss():
    """``trace_features`` applies the LM head at the answer positions only; its keys and
    gradients equal a plain forward's (all logits) cross-entropy on the answer tokens."""
    import torch.nn.functional as F

    model, tok = _model(seed=3), tiny_tokenizer()
    hp = resolve(model, build_hparams("ultraedit", HP))
    path = module_paths(family_of(model), hp)[-1]
    sequences = fact_sequences(tok, REQUESTS[:1], False)
    ((keys, grads),) = trace_features(model, tok, sequences, [path], "all", 1).values()
    ids, n_answer, _ = sequences[0]
    seen: dict[str, torch.Tensor] = {}

    def hook(_m, inputs, output):  # noqa: ANN001, ANN202
        seen["k"] = inputs[0].detach()
        seen["out"] = output.detach().requires_grad_(True)   # the graph from here up
        return seen["out"]

    handle = model.get_submodule(path).register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
    finally:
        handle.remove()
    answer = slice(len(ids) - n_answer - 1, len(ids) - 1)
    F.cross_entropy(logits[answer].float(), torch.tensor(ids[len(ids) - n_answer:])).backward()
    torch.testing.assert_close(keys, seen["k"][0].float())
    torch.testing.assert_close(grads, seen["out"].grad[0].float(), rtol=1e-4, atol=1e-7)
    assert grads.abs().max() > 0

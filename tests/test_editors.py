"""Every editor on tiny random models of every family: contract, algebra, exactness."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kedit_vc.compiler.plan import EditRequest, Probe
from kedit_vc.editors.base import EditContext, EditResult, editor_names, get_editor
from kedit_vc.editors.common.keys import subject_keys
from kedit_vc.editors.common.metatrain import DataSplit, TrainSettings
from kedit_vc.editors.common.positions import subject_last_index
from kedit_vc.editors.memit.algorithm import memit_layer_update
from kedit_vc.editors.registry import build_hparams, method_names
from kedit_vc.editors.rome.algorithm import rome_update
from kedit_vc.errors import UsageError
from kedit_vc.eval import score_requests
from kedit_vc.models.families import family_of, mlp_out_weight
from kedit_vc.models.prompting import prefix_ids
from kedit_vc.ops.train_editor import LEARNED, train_split
from tiny_models import FAMILY_KINDS, tiny_family_model, tiny_tokenizer

REQUESTS = (
    EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris",
                (Probe("rewrite", "The Eiffel Tower is located in the city of", "Rome", "Paris"),)),
    EditRequest("e-2", "Microsoft", "{} was founded by", "Steve Jobs", "Bill Gates",
                (Probe("rewrite", "Microsoft was founded by", "Steve Jobs", "Bill Gates"),)),
)
TINY = {
    "rome": {"layer": 1, "v_steps": 8, "stats_tokens": 600, "context_templates": 2, "context_length": 3},
    "memit": {"layers": [0, 1], "v_steps": 8, "stats_tokens": 600, "context_templates": 2, "context_length": 3,
              "mom2_weight": 10.0},
    "ft": {"layer": 1, "steps": 5},
    "pmet": {"layers": [0, 1], "v_steps": 8, "stats_tokens": 600, "context_templates": 2, "context_length": 3,
             "mom2_weight": 10.0},
    "alphaedit": {"layers": [0, 1], "v_steps": 8, "stats_tokens": 600, "context_templates": 2,
                  "context_length": 3, "nullspace_threshold": 0.05, "l2": 1e-4},
}
TINY["joint_rome"] = TINY["rome"]
#: ``auto`` trying ROME alone: its result must be ROME's, with the same expectations.
TINY["auto"] = {"candidates": ["rome"], "hparams": {"rome": TINY["rome"]}, "weights": {"reliability": 1}}


@pytest.fixture(scope="module")
def tok():  # noqa: ANN201
    return tiny_tokenizer()


def _model(kind: str) -> torch.nn.Module:
    return tiny_family_model(kind, d_model=32, d_mlp=64, vocab=300, layers=3)


def _edit(method: str, model: torch.nn.Module, tok, requests=REQUESTS, stats_dir=None):  # noqa: ANN001, ANN202
    """(delta, result) of ``method`` with its tiny settings (its defaults if it has none here)."""
    context = EditContext(fingerprint=f"tiny-{model.config.model_type}", stats_dir=stats_dir, progress=False)
    if method == "serac":  # a learned router: give it a (hand-made) classifier for this model
        from test_serac import handmade_classifier

        handmade_classifier(str(context.fingerprint), int(model.config.hidden_size))
    hp = build_hparams(method, TINY.get(method, {}))
    if method in LEARNED:  # learned editors edit with a network trained for this base model first
        assert context.fingerprint is not None
        train_split(method, model, tok, context.fingerprint, DataSplit(tuple(REQUESTS), (), ()), hp,
                    TrainSettings(steps=1, edits_per_step=1))
    result = get_editor(method).edit(model, tok, list(requests), hp, context)
    return result.delta, result


def contract_methods() -> list[str]:
    """Every registered method: a new method folder joins the contract test with no edit here."""
    return method_names()


def check_editor_contract(method: str, kind: str, tok, stats_dir: str) -> tuple[EditResult, bool]:  # noqa: ANN001
    """What every editor promises, on a tiny ``kind`` model: an ``EditResult`` whose delta
    names real parameters with their shapes, the model left exactly as found, and apply
    then invert restoring the weights. Returns the result and whether applying changed them."""
    model = _model(kind)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    delta, result = _edit(method, model, tok, stats_dir=stats_dir)
    assert isinstance(result, EditResult)
    # The model is left exactly as found.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    params = dict(model.named_parameters())
    assert set(delta.updates) <= set(params)
    for name in delta.updates:
        assert delta.dense(name).shape == params[name].shape
    # apply then invert restores the weights within float32 rounding of W + ΔW.
    delta.apply(model)
    changed = any(not torch.equal(before[n], params[n]) for n in delta.updates)
    delta.inverse().apply(model)
    for name in delta.updates:
        scale = 1.0 + float(delta.dense(name).abs().max())
        torch.testing.assert_close(params[name], before[name], atol=1e-6 * scale, rtol=0)
    return result, changed


def test_registry_lists_every_method_and_refuses_unknown() -> None:
    assert {"rome", "memit", "ft", "alphaedit"} <= set(editor_names())
    with pytest.raises(UsageError, match="known methods"):
        get_editor("romee")


@pytest.mark.parametrize("kind", FAMILY_KINDS)
@pytest.mark.parametrize("method", contract_methods())
def test_editor_contract_on_every_family(kind: str, method: str, tok, tmp_path) -> None:  # noqa: ANN001
    result, changed = check_editor_contract(method, kind, tok, str(tmp_path))
    if method not in TINY:  # a method this file has no expectations for: the contract only
        return
    delta = result.delta
    family = family_of(_model(kind))
    own = TINY["rome"] if method == "auto" else TINY[method]
    layers = own.get("layers") or [own["layer"]]
    assert set(delta.updates) == {family.mlp_out_weight_name(layer) for layer in layers}
    # Locate-then-edit methods store factors; fine-tuning is dense.
    kinds = {type(u).__name__ for u in delta.updates.values()}
    assert kinds == ({"Dense"} if method == "ft" else {"LowRank"})
    assert changed
    if method != "ft":
        assert all(keys.shape == (2, 64) for keys in result.written_keys.values())


@pytest.mark.parametrize("method", ["rome", "memit", "alphaedit"])
def test_edit_makes_the_new_object_likelier(method: str, tok, tmp_path) -> None:  # noqa: ANN001
    # Default-initialised tiny models have near-uniform logits; a wider init gives them
    # preferences an edit can measurably change.
    model = tiny_family_model("llama", d_model=32, d_mlp=64, vocab=300, layers=3, initializer_range=0.3)
    requests = [REQUESTS[0], EditRequest("e-3", "Microsoft", "{} is located in the city of", "Berlin", "Redmond",
                                         (Probe("rewrite", "Microsoft is located in the city of", "Berlin", "Redmond"),))]
    pre = score_requests(model, tok, requests)
    # Bare prompts only (no generated contexts, no raw-prompt copy): in a random 3-layer model
    # a context prefix moves the key so far that a template-averaged key says little about the
    # bare prompt's.
    hp = {**TINY[method], "v_steps": 25, "clamp_norm_factor": 4.0, "context_templates": 0, "raw_context": False}
    context = EditContext(fingerprint="tiny-llama", stats_dir=str(tmp_path), progress=False)
    delta = get_editor(method).edit(model, tok, requests, build_hparams(method, hp), context).delta
    delta.apply(model)
    post = score_requests(model, tok, requests)
    nll = lambda scores: [e.probes[0].target_nll for e in scores.edits]  # noqa: E731
    assert all(after < before - 0.5 for after, before in zip(nll(post), nll(pre))), (nll(pre), nll(post))


def test_rome_update_maps_key_to_value_and_spares_c_orthogonal_keys() -> None:
    torch.manual_seed(0)
    d_model, d_mlp = 8, 20
    weight = torch.randn(d_model, d_mlp)
    samples = torch.randn(500, d_mlp) * torch.linspace(0.2, 2, d_mlp)
    mom2 = samples.T @ samples / 500
    key, value = torch.randn(d_mlp), torch.randn(d_model)
    left, right = rome_update(weight, key, value, mom2, ridge=0.0)
    new = weight.double() + torch.outer(left, right)
    torch.testing.assert_close(new @ key.double(), value.double(), atol=1e-8, rtol=1e-8)
    # Any x with (C⁻¹k*)ᵀx = 0 is mapped as before.
    x = torch.randn(d_mlp).double()
    x = x - (right @ x) / (right @ right) * right
    torch.testing.assert_close(new @ x, weight.double() @ x, atol=1e-8, rtol=1e-8)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), weight=st.floats(0.1, 1e4), seed=st.integers(0, 1000))
def test_memit_update_solves_its_normal_equations(n: int, weight: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    d_model, d_mlp = 6, 12
    samples = torch.randn(200, d_mlp, generator=generator)
    mom2 = samples.T @ samples / 200
    keys = torch.randn(n, d_mlp, generator=generator)
    residual = torch.randn(n, d_model, generator=generator)
    preserved = torch.randn(3, d_mlp, generator=generator)
    left, right = memit_layer_update(keys, residual, mom2, weight, preserved)
    update = left @ right.T  # [d_model, d_mlp]
    k, p = keys.double(), preserved.double()
    # ΔW (λC + KᵀK + K_pᵀK_p) = Rᵀ K   (the least-squares optimum of MEMIT's objective)
    lhs = update @ (weight * mom2.double() + k.T @ k + p.T @ p)
    torch.testing.assert_close(lhs, residual.double().T @ k, atol=1e-6, rtol=1e-6)


def test_subject_at_prompt_start_is_not_at_the_attention_sink(tok) -> None:  # noqa: ANN001
    # The tiny tokenizer has no BOS: the shared prefix puts <|endoftext|> first.
    assert prefix_ids(tok) == [tok.convert_tokens_to_ids("<|endoftext|>")]
    assert subject_last_index(tok, "{} is the capital of", "Paris") == 1
    assert subject_last_index(tok, "The {} is located in", "Eiffel Tower") == 3


def test_rome_edit_writes_value_at_averaged_key(tok, tmp_path) -> None:  # noqa: ANN001
    """W' k* = v*: after ROME, the edited matrix maps the template-averaged key to the target."""
    from kedit_vc.editors.common.templates import context_templates
    from kedit_vc.stats import key_second_moments

    model = _model("llama")
    hp = build_hparams("rome", TINY["rome"])
    request = REQUESTS[0]
    delta, _ = _edit("rome", model, tok, requests=[request], stats_dir=str(tmp_path))
    templates = context_templates(model, tok, hp.context_templates, hp.context_length, raw=hp.raw_context)
    key = subject_keys(model, tok, [request], [1], templates)[1][0]
    mom2 = key_second_moments(model, tok, "tiny-llama", [1], hp.stats_tokens, stats_dir=str(tmp_path))[1]
    weight = mlp_out_weight(model, 1).detach().clone()
    change = delta.dense(family_of(model).mlp_out_weight_name(1))
    # The update is rank one along C⁻¹k*, scaled so that (W + ΔW) k* - W k* lies in its column space.
    direction = torch.linalg.solve(mom2.double() + 1e-6 * mom2.diagonal().mean() * torch.eye(64), key.double())
    u, s, vh = torch.linalg.svd(change.double())
    assert s[1] < 1e-6 * s[0]
    cos = torch.nn.functional.cosine_similarity(vh[0], direction / direction.norm(), dim=0).abs()
    assert cos > 0.999
    assert torch.isfinite(weight).all()


def test_statistics_equal_a_direct_computation_and_are_cached(tok, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """C = mean of k kᵀ over every corpus token but the prefix (attention-sink) position."""
    from kedit_vc.models.families import get_module
    from kedit_vc.models.hooks import record_inputs
    from kedit_vc.stats import key_second_moments

    model = _model("llama")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the city of Paris is the capital of France . " * 3)
    result = key_second_moments(model, tok, "fp", [0, 2], 10_000, corpus=str(corpus),
                                stats_dir=str(tmp_path / "stats"), progress=False)
    ids = torch.tensor([prefix_ids(tok) + tok(corpus.read_text(), add_special_tokens=False).input_ids])
    modules = {str(i): get_module(model, family_of(model).mlp_out_path(i)) for i in (0, 2)}
    with torch.no_grad(), record_inputs(modules) as seen:
        model(ids)
    for layer in (0, 2):
        keys = seen[str(layer)][0, 1:].double()
        torch.testing.assert_close(result[layer].double(), keys.T @ keys / keys.shape[0], atol=1e-5, rtol=1e-4)
    # A second call reads the cache (no forward pass at all).
    monkeypatch.setattr(torch.nn.Module, "__call__", lambda *a, **k: pytest.fail("recomputed"))
    again = key_second_moments(model, tok, "fp", [2], 10_000, corpus=str(corpus),
                               stats_dir=str(tmp_path / "stats"), progress=False)
    assert torch.equal(again[2], result[2])


def test_self_sampled_statistics_are_seeded(tok, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from kedit_vc.stats import key_second_moments

    monkeypatch.delenv("KVC_STATS_TEXT", raising=False)
    model = _model("gpt2")  # learned positions stop at 64: sampling must respect that
    first = key_second_moments(model, tok, "fp", [1], 300, stats_dir=str(tmp_path / "a"), progress=False)[1]
    second = key_second_moments(model, tok, "fp", [1], 300, stats_dir=str(tmp_path / "b"), progress=False)[1]
    assert torch.equal(first, second)
    assert torch.linalg.eigvalsh(first.double()).min() > -1e-6  # a second moment is PSD


def test_target_optimisation_in_chunks_equals_joint(tok) -> None:  # noqa: ANN001
    """Each request's vector only sees its own prompts, so chunking changes nothing."""
    from kedit_vc.editors.common.targets import TargetSettings, optimise_targets

    model = _model("llama")
    settings = TargetSettings(steps=4, lr=0.5, weight_decay=1e-3, kl_factor=0.0625,
                              clamp_norm_factor=4.0, early_stop_nll=0.0)
    path = family_of(model).mlp_path(1)
    joint = optimise_targets(model, tok, list(REQUESTS), path, 1, ["{}"], settings, chunk_size=8)
    alone = optimise_targets(model, tok, list(REQUESTS), path, 1, ["{}"], settings, chunk_size=1)
    torch.testing.assert_close(joint[0], alone[0])
    torch.testing.assert_close(joint[1], alone[1], atol=1e-4, rtol=1e-3)


def test_requests_stop_early_on_their_own_as_if_run_alone(tok) -> None:  # noqa: ANN001
    """A request that reaches the early-stop NLL is frozen and leaves the batch; the others go on."""
    from kedit_vc.editors.common.targets import TargetSettings, optimise_targets

    model = _model("llama")
    path = family_of(model).mlp_path(1)
    alone_runs = []
    for stop in (5.6, 0.0):   # the tiny model moves its NLL from ~5.60 (second) and ~5.81 (first) a little
        settings = TargetSettings(steps=10, lr=0.5, weight_decay=1e-3, kl_factor=0.0625,
                                  clamp_norm_factor=4.0, early_stop_nll=stop)
        joint = optimise_targets(model, tok, list(REQUESTS), path, 1, ["{}", "A b. {}"], settings)
        alone = [optimise_targets(model, tok, [r], path, 1, ["{}", "A b. {}"], settings) for r in REQUESTS]
        torch.testing.assert_close(joint[1], torch.cat([a[1] for a in alone]), atol=1e-4, rtol=1e-3)
        assert joint[2]["request_steps"] == [a[2]["request_steps"][0] for a in alone]
        alone_runs.append(joint[2]["request_steps"])
    stopped, full = alone_runs
    assert full == [10] * len(REQUESTS)
    assert len(set(stopped)) > 1 and min(stopped) < 10, stopped   # the early stop did fire, unevenly


def test_rome_writes_requests_of_one_subject_once_and_both_take(tok, tmp_path) -> None:  # noqa: ANN001
    """Two facts about one subject share its key: ROME writes them as one rank-one update
    whose one target lowers their mean NLL (separate writes overwrote the first; that both
    take on a real model is tests/test_derive_smollm2.py's check)."""
    from kedit_vc.editors.common.targets import by_subject

    model = tiny_family_model("llama", d_model=32, d_mlp=64, vocab=300, layers=3, initializer_range=0.3)
    requests = [
        EditRequest("e-a", "Microsoft", "{} is located in the city of", "Berlin", "Redmond",
                    (Probe("rewrite", "Microsoft is located in the city of", "Berlin", "Redmond"),)),
        EditRequest("e-b", "Microsoft", "{} was founded by", "Steve Jobs", "Bill Gates",
                    (Probe("rewrite", "Microsoft was founded by", "Steve Jobs", "Bill Gates"),)),
    ]
    assert [[r.edit_id for r in unit] for unit in by_subject([*requests, REQUESTS[0]])] == [["e-a", "e-b"], ["e-1"]]
    pre = score_requests(model, tok, requests)
    hp = {**TINY["rome"], "v_steps": 25, "clamp_norm_factor": 4.0, "context_templates": 0}
    context = EditContext(fingerprint="tiny-llama", stats_dir=str(tmp_path), progress=False)
    result = get_editor("rome").edit(model, tok, requests, build_hparams("rome", hp), context)
    (update,) = result.delta.updates.values()
    assert update.left.shape[1] == 1  # one rank-one write, not two
    assert all(keys.shape[0] == 1 for keys in result.written_keys.values())
    result.delta.apply(model)
    post = score_requests(model, tok, requests)
    nll = lambda scores: sum(e.probes[0].target_nll for e in scores.edits) / 2  # noqa: E731
    assert nll(post) < nll(pre) - 0.5, (nll(pre), nll(post))


def test_raw_context_template_encodes_without_the_prefix(tok) -> None:  # noqa: ANN001
    """``raw_context`` adds the bare prompt as a user types it: no ``<|endoftext|>`` prefix."""
    from kedit_vc.editors.common.positions import subject_last_index
    from kedit_vc.editors.common.templates import RAW_TEMPLATE, context_templates
    from kedit_vc.models.prompting import encode_text, prefix_ids

    model = tiny_family_model("llama", d_model=32, d_mlp=64, vocab=300, layers=3)
    plain = context_templates(model, tok, 0, 5)
    with_raw = context_templates(model, tok, 0, 5, raw=True)
    assert plain == ("{}",)
    if not prefix_ids(tok):  # a tokenizer with its own BOS: raw and prefixed are the same text
        assert with_raw == plain
        return
    assert with_raw == ("{}", RAW_TEMPLATE)
    raw_text = RAW_TEMPLATE.replace("{}", "Microsoft was founded by")
    assert encode_text(tok, raw_text) == encode_text(tok, "Microsoft was founded by")[len(prefix_ids(tok)):]
    raw_prompt = RAW_TEMPLATE.replace("{}", "{} was founded by")
    assert subject_last_index(tok, raw_prompt, "Microsoft") == subject_last_index(tok, "{} was founded by",
                                                                                   "Microsoft") - len(prefix_ids(tok))


@pytest.mark.parametrize("method,default", [("rome", True), ("memit", True), ("joint_rome", True),
                                            ("alphaedit", True), ("pmet", False)])
def test_raw_prompt_contexts_are_on_where_they_were_measured(method: str, default: bool) -> None:
    """Edits must hold on the prompt a user types (no prefix token): measured on held-out
    records for ROME, MEMIT and AlphaEdit (README, "Raw-prompt contexts"), so ``raw_context`` is
    on for them unless a spec turns it off; PMET keeps it off until measured."""
    assert build_hparams(method, {}).raw_context is default
    assert build_hparams(method, {"raw_context": not default}).raw_context is (not default)

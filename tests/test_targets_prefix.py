"""Cheaper target optimisation gives the same vectors: the prefix before each subject's last
token computed once (``prefix_cache``) against whole prompts every step, on every family."""

from __future__ import annotations

import pytest
import torch
from tiny_models import FAMILY_KINDS, tiny_family_model, tiny_tokenizer

from kedit_vc.compiler.plan import EditRequest, Probe
from kedit_vc.editors.common.targets import TargetSettings, optimise_targets
from kedit_vc.editors.common.templates import RAW_TEMPLATE
from kedit_vc.models.families import family_of

REQUESTS = [
    EditRequest("e-1", "Eiffel Tower", "The {} is located in the city of", "Rome", "Paris",
                (Probe("rewrite", "The Eiffel Tower is located in the city of", "Rome", "Paris"),)),
    EditRequest("e-2", "Microsoft", "{} was founded by", "Steve Jobs", "Bill Gates",
                (Probe("rewrite", "Microsoft was founded by", "Steve Jobs", "Bill Gates"),)),
    EditRequest("e-3", "Danielle", "The mother tongue of {} is", "English", "French",
                (Probe("rewrite", "The mother tongue of Danielle is", "English", "French"),)),
]
#: Templates of different prefix lengths, one with no prefix at all (the subject may sit at 0).
TEMPLATES = ["{}", "A b c d. {}", "The. {}", RAW_TEMPLATE]


def _settings(steps: int, prefix_cache: bool, stop: float = 0.0) -> TargetSettings:
    return TargetSettings(steps=steps, lr=0.5, weight_decay=1e-3, kl_factor=0.0625, clamp_norm_factor=4.0,
                          early_stop_nll=stop, prefix_cache=prefix_cache)


@pytest.mark.parametrize("kind", FAMILY_KINDS)
def test_prefix_cache_gives_the_same_targets_as_whole_prompts(kind: str) -> None:
    tok = tiny_tokenizer()
    model = tiny_family_model(kind, d_model=32, d_mlp=64, vocab=300, layers=3, initializer_range=0.3)
    if getattr(model.config, "sliding_window", None):
        model.config.sliding_window = 64   # the tiny window (4) is shorter than the prompts: see below
    family = family_of(model)
    for path, block in ((family.mlp_path(1), 1), (family.block_path(0), 1), (family.block_path(1), 2)):
        cached = optimise_targets(model, tok, REQUESTS, path, block, TEMPLATES, _settings(5, True))
        whole = optimise_targets(model, tok, REQUESTS, path, block, TEMPLATES, _settings(5, False))
        torch.testing.assert_close(cached[0], whole[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(cached[1], whole[1], atol=1e-4, rtol=1e-3)
        assert torch.isfinite(cached[1]).all()
        assert cached[2]["nll"] == pytest.approx(whole[2]["nll"], rel=1e-3, abs=1e-5)
        assert cached[2]["tokens"] < whole[2]["tokens"]   # it did run fewer tokens per step


def test_prefix_cache_keeps_the_early_stop_of_each_request() -> None:
    """Requests leaving the batch mid-run (cache rows selected) still match whole prompts."""
    tok = tiny_tokenizer()
    model = tiny_family_model("llama", d_model=32, d_mlp=64, vocab=300, layers=3, initializer_range=0.3)
    path = family_of(model).block_path(1)
    whole = optimise_targets(model, tok, REQUESTS, path, 2, TEMPLATES, _settings(12, False))
    stop = sorted(whole[2]["nll"])[1] * 1.5     # some requests stop before the last step, not all
    cached = optimise_targets(model, tok, REQUESTS, path, 2, TEMPLATES, _settings(12, True, stop))
    whole = optimise_targets(model, tok, REQUESTS, path, 2, TEMPLATES, _settings(12, False, stop))
    assert cached[2]["request_steps"] == whole[2]["request_steps"]
    assert min(whole[2]["request_steps"]) < 12
    torch.testing.assert_close(cached[1], whole[1], atol=1e-4, rtol=1e-3)


def test_a_sliding_window_shorter_than_the_prompts_falls_back_to_whole_prompts() -> None:
    """Left padding would count as window positions, so such a model runs whole prompts."""
    tok = tiny_tokenizer()
    model = tiny_family_model("gemma3_text", d_model=32, d_mlp=64, vocab=300, layers=3, initializer_range=0.3)
    assert model.config.sliding_window < 8
    path = family_of(model).block_path(1)
    cached = optimise_targets(model, tok, REQUESTS, path, 2, TEMPLATES, _settings(3, True))
    whole = optimise_targets(model, tok, REQUESTS, path, 2, TEMPLATES, _settings(3, False))
    assert cached[2]["tokens"] == whole[2]["tokens"]
    torch.testing.assert_close(cached[1], whole[1])


@pytest.mark.parametrize("prefix_cache", [True, False])
def test_early_stop_fires_at_the_first_step_below_the_threshold(prefix_cache: bool) -> None:
    """The stop rule: a request stops at the first step whose NLL is below ``early_stop_nll``,
    keeping the vector that reached it (= the vector after that many steps with no stop)."""
    tok = tiny_tokenizer()
    model = tiny_family_model("llama", d_model=32, d_mlp=64, vocab=300, layers=3, initializer_range=0.3)
    path = family_of(model).block_path(1)
    trajectory: list[float] = []
    optimise_targets(model, tok, REQUESTS[:1], path, 2, TEMPLATES, _settings(10, prefix_cache),
                     progress=lambda _step, nll: trajectory.append(nll))
    assert len(trajectory) == 10
    first = min(range(1, 10), key=lambda i: trajectory[i])
    assert trajectory[first] < min(trajectory[:first])
    stop = (trajectory[first] + min(trajectory[:first])) / 2
    stopped = optimise_targets(model, tok, REQUESTS[:1], path, 2, TEMPLATES, _settings(10, prefix_cache, stop))
    assert stopped[2]["request_steps"] == [first]
    assert stopped[2]["steps"] == first + 1          # the step that found it below ran, nothing after
    reference = optimise_targets(model, tok, REQUESTS[:1], path, 2, TEMPLATES, _settings(first, prefix_cache))
    torch.testing.assert_close(stopped[1], reference[1])

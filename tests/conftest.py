"""Shared fixtures: a tiny random Llama saved as a HuggingFace folder, and a store on it.

The model folder is what a user would pass to ``kvc init --model DIR``: safetensors,
config and an offline word-level tokenizer (no BOS; ``<eos>`` ends and pads). Everything
is seeded, so its fingerprint and the covariance statistics cached for it are stable;
statistics go to a per-session cache so tests never touch the user's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tiny_models import WORDS, tiny_tokenizer

if TYPE_CHECKING:
    import torch

VOCAB = 300

#: Hyperparameters that keep an edit of the tiny model to a fraction of a second.
#: The tiny models' CLI tests pin ``raw_context = false``: their expected predictions (which
#: edit moves which prompt on a random model) were written for that context set; the default
#: (true) is tested on its own in test_editors.py and on SmolLM2.
TINY_ROME = ("method rome { layer = 1 v_steps = 3 stats_tokens = 2000 context_templates = 2 context_length = 4 "
             "raw_context = false }")
TINY_MEMIT = ("method memit { layers = [1, 2] v_steps = 3 stats_tokens = 2000 context_templates = 2 "
              "context_length = 4 raw_context = false }")


def save_tiny_llama(folder: Path, seed: int = 0) -> Path:
    """A random 4-layer Llama (hidden 64, MLP 128, vocab 300) with its tokenizer, in ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False, pad_token_id=0, eos_token_id=2, bos_token_id=None)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer(VOCAB).save_pretrained(folder)
    return folder


def save_tiny_qwen2(folder: Path, seed: int = 1) -> Path:
    """A random 3-layer Qwen2 (hidden 48, MLP 96) with the tiny Llama's tokenizer, in ``folder``:
    another architecture that a store made on the tiny Llama must refuse as its base."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False, pad_token_id=0, eos_token_id=2, bos_token_id=None)
    model = Qwen2ForCausalLM(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer(VOCAB).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def kvc_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kvc-cache")


@pytest.fixture(scope="session")
def stats_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded word salad to measure key statistics on: sampling text from the tiny model
    would cost a minute on a busy CPU, a forward over a file a fraction of a second."""
    import random

    rng = random.Random(0)
    path = tmp_path_factory.mktemp("stats-text") / "corpus.txt"
    path.write_text(" ".join(rng.choice(WORDS) for _ in range(6000)), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny-model tests cache into a session folder and measure statistics on a text file;
    slow tests keep the real KVC_CACHE (SmolLM2's statistics are cached there)."""
    if "slow" in request.keywords:
        return
    monkeypatch.setenv("KVC_CACHE", str(request.getfixturevalue("kvc_cache")))
    monkeypatch.setenv("KVC_STATS_TEXT", str(request.getfixturevalue("stats_text")))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder that is also the working directory."""
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture()
def store(project: Path, tiny_model_dir: Path):  # noqa: ANN201
    """A store on the tiny Llama in the project folder, open for the test."""
    from kedit_vc.ops import init

    with init(project, str(tiny_model_dir)) as s:
        yield s


def edited_logits(store, rev: str = "HEAD",  # noqa: ANN001
                  text: str = "The Eiffel Tower is located in the city of Paris") -> "torch.Tensor":
    """Logits (1, T, vocab) of ``text`` on the revision as ``load_edited`` serves it."""
    import torch

    from kedit_vc import load_edited
    from kedit_vc.models.prompting import encode_text

    model, tokenizer = load_edited(store.paths.root, rev)
    ids = torch.tensor([encode_text(tokenizer, text)])
    with torch.no_grad():
        return model(input_ids=ids).logits


def write_spec(folder: Path, name: str, body: str, method: str = TINY_ROME) -> Path:
    """A spec file ``name`` holding ``method`` then ``body``."""
    path = folder / name
    path.write_text(f"{method}\n{body}\n", encoding="utf-8")
    return path


def run_kvc(*args: str, input: str | None = None):
    """Invoke the CLI as ``kvc`` does (KvcError -> one line + exit code), capturing output."""
    from click.testing import CliRunner

    from kedit_vc.cli.main import main

    runner = CliRunner()
    return runner.invoke(_Main(main), list(args), input=input, catch_exceptions=False,
                         env={"COLUMNS": "160"})


class _Main:
    """Adapts ``main(argv)`` (which calls sys.exit) to what CliRunner.invoke expects."""

    def __init__(self, main) -> None:  # noqa: ANN001
        self._main = main
        self.name = "kvc"

    def main(self, args, prog_name=None, **_: object) -> None:  # noqa: ANN001
        self._main(list(args))


#: peft's own loader (what the export tests check adapters with; ``kvc export`` writes the
#: adapter itself) calls a transformers property that warns of its removal in v6.
PEFT_LOADER_WARNING = "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"

"""Loading local HuggingFace folders: safetensors, pickles behind a flag, clear refusals.

Each test gets its own ``KVC_CACHE`` so fingerprint records never leak between them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import save_tiny_llama

from kedit_vc.errors import ModelError
from kedit_vc.models import EMBEDDED, load_model
from kedit_vc.models.loading import EmbeddedModel, _assemble_chunks
from kedit_vc.models.fingerprint import fingerprint_state_dict


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("KVC_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny"))


def _pickle_copy(source: Path, target: Path) -> Path:
    """The same weights as ``pytorch_model.bin`` only (a pre-safetensors checkpoint)."""
    from safetensors.torch import load_file

    shutil.copytree(source, target)
    state = {}
    for file in sorted(target.glob("*.safetensors")):
        state.update(load_file(str(file)))
        file.unlink()
    for index in target.glob("*.safetensors.index.json"):
        index.unlink()
    torch.save(state, target / "pytorch_model.bin")
    return target


def test_safetensors_folder_loads_with_content_fingerprint(tiny_folder: Path) -> None:
    first = load_model(str(tiny_folder))
    second = load_model(str(tiny_folder))
    assert first.fingerprint == second.fingerprint
    assert first.fingerprint.startswith("sha256:")
    # Content, not files: the fingerprint of the weights as they sit in memory.
    assert first.fingerprint == fingerprint_state_dict(first.model.state_dict())
    assert first.path == tiny_folder and first.family.name == "llama"
    assert not first.model.training
    assert not any(p.requires_grad for p in first.model.parameters())
    assert first.model.config.model_type == "llama"


def test_fingerprint_changes_with_any_weight(tiny_folder: Path) -> None:
    loaded = load_model(str(tiny_folder))
    state = loaded.model.state_dict()
    before = fingerprint_state_dict(state)
    name = "model.layers.2.mlp.down_proj.weight"
    state[name][0, 0] += 1e-3
    assert fingerprint_state_dict(state) != before
    state[name][0, 0] -= 1e-3


def test_pickle_folder_refused_without_trust(tiny_folder: Path, tmp_path: Path) -> None:
    folder = _pickle_copy(tiny_folder, tmp_path / "pickled")
    with pytest.raises(ModelError) as caught:
        load_model(str(folder))
    message = str(caught.value)
    assert "--trust-pickle" in message and "\n" not in message


def test_pickle_folder_loads_when_trusted(tiny_folder: Path, tmp_path: Path) -> None:
    folder = _pickle_copy(tiny_folder, tmp_path / "pickled")
    loaded = load_model(str(folder), trust_pickle=True)
    # Same weights, other file format: same fingerprint.
    assert loaded.fingerprint == load_model(str(tiny_folder)).fingerprint


def test_unknown_alias_lists_embedded_models() -> None:
    with pytest.raises(ModelError) as caught:
        load_model("no-such-model")
    message = str(caught.value)
    assert "'no-such-model'" in message and "\n" not in message
    for alias in EMBEDDED:
        assert alias in message


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such folder"):
        load_model(str(tmp_path / "missing" / "model"))


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no config.json"):
        load_model(str(tmp_path))


@pytest.mark.parametrize("model_type", ["mamba", "made_up_arch"])
def test_unsupported_architecture_lists_supported(tiny_folder: Path, tmp_path: Path, model_type: str) -> None:
    folder = tmp_path / model_type
    shutil.copytree(tiny_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = model_type
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError) as caught:
        load_model(str(folder))
    message = str(caught.value)
    assert f"unsupported architecture {model_type!r}" in message
    assert "supported: " in message and "llama" in message and "gpt2" in message
    assert "\n" not in message


def _chunked_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sha256: str) -> EmbeddedModel:
    """An embedded model whose 'GGUF' ships as two chunks in a throwaway package."""
    package = tmp_path / "site" / "kvc_fake_chunks"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "f.gguf.part00").write_bytes(b"GGUF-first-")
    (package / "data" / "f.gguf.part01").write_bytes(b"second")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = EmbeddedModel(alias="fake", package="kvc_fake_chunks", filename="f.gguf",
                          install="pip install kvc-fake", description="test",
                          parts=(("kvc_fake_chunks", "data/f.gguf.part00"), ("kvc_fake_chunks", "data/f.gguf.part01")),
                          sha256=sha256)
    monkeypatch.setitem(EMBEDDED, "fake", entry)
    return entry


def test_chunks_assemble_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    content = b"GGUF-first-second"
    entry = _chunked_entry(tmp_path, monkeypatch, hashlib.sha256(content).hexdigest())
    assert _assemble_chunks(entry, tmp_path).read_bytes() == content


def test_chunks_with_wrong_sha256_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _own_cache: Path) -> None:
    _chunked_entry(tmp_path, monkeypatch, "0" * 64)
    with pytest.raises(ModelError, match="wrong sha256.*pip install kvc-fake"):
        load_model("fake")
    assert not list((_own_cache / "models").glob(".assemble-*"))  # scratch file removed


def test_missing_chunk_package_names_install(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = EmbeddedModel(alias="fake", package="kvc_no_such_pkg", filename="f.gguf", install="pip install kvc-x",
                          description="test", parts=(("kvc_no_such_pkg", "data/a"),), sha256="0" * 64)
    monkeypatch.setitem(EMBEDDED, "fake", entry)
    with pytest.raises(ModelError, match="needs the package 'kvc_no_such_pkg'; install it with: pip install kvc-x"):
        load_model("fake")

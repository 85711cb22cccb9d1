"""``kvc model info`` / ``kvc model generate`` on a tiny folder, and their refusals.

Refusals go through ``kedit_vc.cli.main.main`` (as the ``kvc`` script does): one
``error: ...`` line on stderr, a non-zero exit, no traceback. One case runs the real
console script in a subprocess, so nothing between it and the user can add a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import run_kvc, save_tiny_llama

from kedit_vc.cli.main import cli


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-cli"))


def _assert_one_line_error(result, *needles: str) -> None:  # noqa: ANN001 - click Result
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output + result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_help_lists_model_commands() -> None:
    result = CliRunner().invoke(cli, ["model", "--help"])
    assert result.exit_code == 0
    assert "info" in result.output and "generate" in result.output
    info_help = CliRunner().invoke(cli, ["model", "info", "--help"]).output
    assert "--json" in info_help and "--trust-pickle" in info_help


def test_info_table(tiny_folder: Path) -> None:
    result = CliRunner().invoke(cli, ["model", "info", str(tiny_folder)])
    assert result.exit_code == 0, result.output
    for label in ("family", "layers", "d_model", "d_mlp", "parameters", "fingerprint", "path", "load time"):
        assert label in result.output
    assert "llama (llama)" in result.output and "sha256:" in result.output


def test_info_json(tiny_folder: Path) -> None:
    result = CliRunner().invoke(cli, ["model", "info", str(tiny_folder), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["family"] == "llama" and info["layers"] == 4
    assert (info["d_model"], info["d_mlp"], info["vocab"]) == (64, 128, 300)
    assert info["path"] == str(tiny_folder) and info["fingerprint"].startswith("sha256:")
    assert info["edited_matrix"] == "model.layers.{i}.mlp.down_proj.weight"
    assert 0 < info["load_seconds"] < 30 and info["parameters"] > 0


def test_generate_is_greedy_with_the_shared_prefix(tiny_folder: Path) -> None:
    from kedit_vc.cli.model_commands import greedy_completion
    from kedit_vc.models import load_model
    from kedit_vc.models.prompting import encode_text

    result = CliRunner().invoke(cli, ["model", "generate", str(tiny_folder), "the capital of", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("the capital of")
    # Same tokens as an argmax loop over the prefixed prompt.
    loaded = load_model(str(tiny_folder))
    ids = encode_text(loaded.tokenizer, "the capital of")
    assert ids[0] == loaded.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    with torch.no_grad():
        for _ in range(4):
            ids.append(int(loaded.model(torch.tensor([ids])).logits[0, -1].argmax()))
    expected = loaded.tokenizer.decode(ids[-4:], skip_special_tokens=True)
    assert greedy_completion(loaded.model, loaded.tokenizer, "the capital of", 4) == expected
    assert result.output.rstrip("\n") == "the capital of" + expected


def test_unknown_alias() -> None:
    _assert_one_line_error(run_kvc("model", "info", "no-such-model"), "unknown model", "smollm2")


def test_missing_folder(tmp_path: Path) -> None:
    _assert_one_line_error(run_kvc("model", "generate", str(tmp_path / "nope"), "hi"), "no such folder")


def test_unsupported_architecture(tiny_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mamba"
    shutil.copytree(tiny_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "mamba"}))
    _assert_one_line_error(run_kvc("model", "info", str(folder)), "unsupported architecture 'mamba'", "supported:")


def test_pickle_refused_then_trusted(tiny_folder: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_folder, folder)
    (folder / "model.safetensors").unlink()
    torch.save(load_file(str(tiny_folder / "model.safetensors")), folder / "pytorch_model.bin")
    _assert_one_line_error(run_kvc("model", "info", str(folder)), "--trust-pickle")
    trusted = run_kvc("model", "info", str(folder), "--json", "--trust-pickle")
    assert trusted.exit_code == 0, trusted.output
    reference = json.loads(run_kvc("model", "info", str(tiny_folder), "--json").output)
    assert json.loads(trusted.output)["fingerprint"] == reference["fingerprint"]


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("kvc")
    if not script.is_file():
        pytest.skip("the kvc console script is not installed beside this Python")
    env = {**os.environ, "KVC_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([str(script), "model", "info", str(tmp_path / "missing")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown model"), done.stderr

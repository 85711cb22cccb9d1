"""``kvc export``: plain transformers and peft reproduce the store's weights on a tiny Llama."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import PEFT_LOADER_WARNING, TINY_ROME, run_kvc, write_spec
from test_cli_store import EIFFEL, FRANCE, commit, ok, one_line_error

IDS = torch.tensor([[3, 40, 41, 42, 9, 44, 10, 11]])


def head_logits(project) -> torch.Tensor:
    """Logits of the store's HEAD weights, materialised by ``ops.weights``."""
    from kedit_vc.ops.evaluate import Evaluator
    from kedit_vc.store import open_store

    with open_store(project) as store:
        evaluator = Evaluator(store)
        evaluator.move_to(store.head())
        with torch.no_grad():
            return evaluator.loaded.model(IDS).logits


@pytest.fixture()
def edited(project, tiny_model_dir):
    ok(run_kvc("init", "--model", str(tiny_model_dir)))
    commit(project, "a.kedit", EIFFEL)
    commit(project, "b.kedit", FRANCE)
    return project


def test_export_hf_loads_in_plain_transformers(edited):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = ok(run_kvc("export", "-o", "edited-model", "--no-progress"))
    assert "as hf" in out and "model.safetensors" in out
    model = AutoModelForCausalLM.from_pretrained(edited / "edited-model").eval()
    AutoTokenizer.from_pretrained(edited / "edited-model")
    with torch.no_grad():
        torch.testing.assert_close(model(IDS).logits, head_logits(edited), atol=1e-5, rtol=1e-5)
    one_line_error(run_kvc("export", "-o", "edited-model"), 2, "not empty", "--force")
    ok(run_kvc("export", "HEAD~2", "-o", "edited-model", "--force", "--no-progress"))
    provenance = json.loads((edited / "edited-model" / "kvc-export.json").read_text())
    assert provenance["live_commits"] == []


@pytest.mark.filterwarnings(PEFT_LOADER_WARNING)
def test_export_peft_reproduces_head(edited, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = ok(run_kvc("export", "-o", "adapter", "--format", "peft"))
    assert "adapter_model.safetensors" in out and "adapter_config.json" in out
    config = json.loads((edited / "adapter" / "adapter_config.json").read_text())
    assert config["rank_pattern"] == config["alpha_pattern"] == {"model.layers.1.mlp.down_proj": 2}
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    model = PeftModel.from_pretrained(base, edited / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(model(IDS).logits, head_logits(edited), atol=1e-5, rtol=1e-5)


def test_export_peft_refuses_dense_deltas(project, tiny_model_dir):
    ok(run_kvc("init", "--model", str(tiny_model_dir)))
    spec = write_spec(project, "ft.kedit", EIFFEL, method="method ft { layer = 1 steps = 2 }")
    ok(run_kvc("commit", str(spec), "--no-progress"))
    one_line_error(run_kvc("export", "-o", "adapter", "--format", "peft"), 2, "dense update", "--format hf")
    assert not (project / "adapter").exists()
    one_line_error(run_kvc("export", "HEAD~1", "-o", "adapter", "--format", "peft"), 2, "nothing to export")

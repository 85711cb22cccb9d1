"""Property: for any history of low-rank edits and reverts on the tiny Llama, ``kvc export``
(``--format hf`` and ``--format peft``, the two formats ``ops.export`` knows) gives a model
whose logits equal the store's HEAD's, and HEAD's equal the base plus the live deltas added
by hand (so an export that drops an update, or a HEAD that does, is caught)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PEFT_LOADER_WARNING, run_kvc
from test_cli_store import ok
from test_cli_store_export import IDS, head_logits

#: Linear weights of the tiny Llama an edit may touch: name -> [out, in].
PARAMS = {"model.layers.1.mlp.down_proj.weight": (64, 128), "model.layers.2.mlp.up_proj.weight": (128, 64),
          "model.layers.0.self_attn.q_proj.weight": (64, 64)}

op = st.one_of(
    st.tuples(st.just("edit"), st.sampled_from(sorted(PARAMS)), st.integers(1, 3), st.integers(0, 10_000)),
    st.tuples(st.just("revert"), st.integers(0, 20)),
)


def _delta(name: str, rank: int, seed: int):
    from kedit_vc.delta import Delta, LowRank

    gen = torch.Generator().manual_seed(seed)
    rows, cols = PARAMS[name]
    left = torch.randn(rows, rank, generator=gen) * 0.3
    right = torch.randn(cols, rank, generator=gen) * 0.3
    return Delta({name: LowRank(left, right)})


@pytest.mark.filterwarnings(PEFT_LOADER_WARNING)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(op, min_size=1, max_size=5))
def test_exports_reproduce_head_for_any_history(history, tiny_model_dir, monkeypatch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from kedit_vc.store import CommitInput, open_store

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        monkeypatch.chdir(project)
        ok(run_kvc("init", "--model", str(tiny_model_dir)))
        edits: list[str] = []
        with open_store(project) as store:
            for step in history:
                if step[0] == "edit":
                    edits.append(store.write_commit(CommitInput(f"edit {step}", _delta(*step[1:]))))
                elif edits:
                    store.write_commit(CommitInput(f"revert {step}", op="revert", reverts=edits[step[1] % len(edits)]))
            live, live_shas = store.live_deltas(), store.live_commits()
        # ground truth: the base weights plus every live delta, added here
        expected = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
        with torch.no_grad():
            params = dict(expected.named_parameters())
            for delta in live:
                for name in delta.updates:
                    params[name] += delta.dense(name).to(params[name].dtype)
            want = expected(IDS).logits
        torch.testing.assert_close(head_logits(project), want, atol=1e-5, rtol=1e-5)

        ok(run_kvc("export", "-o", "hf", "--no-progress"))
        exported = AutoModelForCausalLM.from_pretrained(project / "hf").eval()
        with torch.no_grad():
            torch.testing.assert_close(exported(IDS).logits, want, atol=1e-5, rtol=1e-5)
        assert json.loads((project / "hf" / "kvc-export.json").read_text())["live_commits"] == live_shas

        result = run_kvc("export", "-o", "adapter", "--format", "peft")
        if not live:
            assert result.exit_code == 2 and "nothing to export" in result.stderr
            return
        assert result.exit_code == 0, result.output
        adapted = PeftModel.from_pretrained(base, project / "adapter").eval()
        with torch.no_grad():
            torch.testing.assert_close(adapted(IDS).logits, want, atol=1e-5, rtol=1e-5)

"""Our incremental decoding on a tiny Llama: the KV cache goes under the name the installed
transformers expects (no deprecation warnings) and gives the logits of a full forward."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kedit_vc.eval.generative import greedy_continuations
from kedit_vc.interpret.readout import greedy
from kedit_vc.models.forward import decode_step
from kedit_vc.stats.corpus import sample_documents
from test_eval_fixtures import tiny_model, tiny_tokenizer

TOK = tiny_tokenizer()
MODEL = tiny_model(vocab_size=len(TOK))


@settings(max_examples=20, deadline=None)
@given(ids=st.lists(st.integers(3, 127), min_size=2, max_size=12), data=st.data())
def test_decode_step_matches_a_full_forward(ids: list[int], data: st.DataObject) -> None:
    split = data.draw(st.integers(1, len(ids) - 1))
    row = torch.tensor([ids])
    with torch.no_grad():
        full = MODEL(input_ids=row).logits  # [1, t, vocab]
        logits, cache = decode_step(MODEL, row[:, :split])
        steps = [logits]
        for t in range(split, len(ids)):
            logits, cache = decode_step(MODEL, row[:, t : t + 1], cache)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)


def test_our_forward_and_generate_paths_emit_no_warning() -> None:
    """SelfIE's greedy readout, generative metrics (generate()) and corpus sampling."""
    prompt = TOK("the capital of France is")["input_ids"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        made = greedy(MODEL, prompt, 5, stops=set())
        texts = greedy_continuations(MODEL, TOK, ["Ghana is in", "a"], [4, 4])
        docs = next(sample_documents(MODEL, TOK, n_tokens=8, seed=0))
    assert len(made) == 5 and len(texts) == 2 and docs.shape[0] == 1


def test_missing_statistics_corpus_is_a_usage_error(tmp_path: Path) -> None:
    """KVC_STATS_TEXT naming nothing is the user's to fix: a UsageError naming the path."""
    import pytest

    from kedit_vc.errors import UsageError
    from kedit_vc.stats.corpus import corpus_id

    with pytest.raises(UsageError, match="no such file"):
        corpus_id(str(tmp_path / "missing.txt"), 0)
    with pytest.raises(UsageError, match="no .txt files"):
        corpus_id(str(tmp_path), 0)
    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    assert corpus_id(str(tmp_path), 0).startswith("text-")

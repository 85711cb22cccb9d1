"""Builders shared by the eval tests: a tiny word-level tokenizer and a tiny random Llama.

Nothing here downloads anything; the model is random, so tests compare our numbers with
direct computations on the same model rather than with expected answers.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIALS = ["<pad>", "<unk>", "<eos>"]
WORDS = (
    "the a of is in located capital city country Paris Rome France Italy Berlin Germany Tokyo Japan "
    "Eiffel Tower Colosseum river town people speak language what who which where when was and to "
    "continent Europe Asia Africa Antarctica Angola Ghana Kenya belongs part nq question answer yes no "
    "head state citizen Croatia Ellie Kemper Kolinda Grabar - Kitarovic , . ? ' s b c d e f g"
).split()


def tiny_tokenizer(extra_words: list[str] | tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """Word-level tokenizer (no BOS; EOS `<eos>`), vocabulary padded to 128 entries."""
    words = list(dict.fromkeys([*SPECIALS, *WORDS, *extra_words]))
    words += [f"w{i}" for i in range(max(0, 128 - len(words)))]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")


def tiny_model(vocab_size: int = 128, seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer, hidden-32 random Llama in float32, eval mode."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False, pad_token_id=0, eos_token_id=2, bos_token_id=None)
    return LlamaForCausalLM(config).eval()


def direct_scores(model, ids: list[int], start: int) -> tuple[float, list[int]]:
    """Mean NLL of ids[start:] and argmax at those positions, from a full unpadded forward."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()  # [t, V]
    logp = torch.log_softmax(logits, dim=-1)
    nll = [-logp[j - 1, ids[j]].item() for j in range(start, len(ids))]
    argmax = [int(logits[j - 1].argmax()) for j in range(start, len(ids))]
    return sum(nll) / len(nll), argmax

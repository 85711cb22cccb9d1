"""Tiny random models of every supported family, built from configs (nothing downloaded)."""

from __future__ import annotations

import torch

FAMILY_KINDS = ["llama", "qwen2", "gemma3_text", "gpt2", "gptj", "gpt_neox"]


def family_config(kind: str, d_model: int = 16, d_mlp: int = 40, vocab: int = 96, layers: int = 3,
                  initializer_range: float = 0.02):  # noqa: ANN201
    """A transformers config of the given family with tiny sizes.

    A larger ``initializer_range`` gives a random model confident enough logits that an
    edit's effect on them can be measured.
    """
    import transformers as tf

    common = dict(vocab_size=vocab, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                  initializer_range=initializer_range)
    decoder = dict(common, hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=layers,
                   num_attention_heads=2, max_position_embeddings=64)
    if kind == "llama":
        return tf.LlamaConfig(**decoder, num_key_value_heads=1)
    if kind == "qwen2":
        return tf.Qwen2Config(**decoder, num_key_value_heads=1)
    if kind == "gemma3_text":
        # Soft-capping on, so logits_from_hidden must apply it to match the model.
        return tf.Gemma3TextConfig(**decoder, num_key_value_heads=1, head_dim=8, sliding_window=4,
                                   final_logit_softcapping=3.0)
    if kind == "gpt2":
        return tf.GPT2Config(**common, n_embd=d_model, n_inner=d_mlp, n_layer=layers, n_head=2, n_positions=64)
    if kind == "gptj":
        return tf.GPTJConfig(**common, n_embd=d_model, n_inner=d_mlp, n_layer=layers, n_head=2,
                             rotary_dim=4, n_positions=64)
    if kind == "gpt_neox":
        return tf.GPTNeoXConfig(**decoder)
    raise AssertionError(kind)


def tiny_family_model(kind: str, seed: int = 0, **sizes: float) -> torch.nn.Module:
    """A seeded random model of ``kind`` in eval mode, gradients off (as load_model leaves it)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(family_config(kind, **sizes)).eval()
    model.requires_grad_(False)
    return model


WORDS = (
    "the a an of is in on at to and was by for with from it that this city country capital "
    "located founded company Paris Rome Berlin Madrid London Tokyo Japan China France Italy Germany Spain "
    "Eiffel Tower Louvre Colosseum Microsoft Apple Amazon Bill Gates Steve Jobs Jeff Bezos Seoul Korea "
    "Europe Asia Africa Antarctica continent river language French English speak people official "
    "Tourists travel see largest designed Gustave headquartered Redmond hosted Olympics 1964 "
    "The What Where Who It . , ? ' s"
).split()


def tiny_tokenizer(vocab: int = 300):  # noqa: ANN201
    """Offline word-level tokenizer: no BOS, ``<eos>`` ends and pads, ``<|endoftext|>`` known."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    words = list(dict.fromkeys(["<pad>", "<unk>", "<eos>", "<|endoftext|>", *WORDS]))
    words += [f"w{i}" for i in range(vocab - len(words))]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")

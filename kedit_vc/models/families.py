"""Model families: where each architecture keeps the parts editors and tracers touch.

A ``Family`` names module paths by template (``{i}`` is the block index), so editors
and interpretability tools never hard-code an architecture. Add a family by adding one
``Family(...)`` to ``FAMILIES``.

Weight layouts: a ``torch.nn.Linear`` stores ``W [out, in]`` and computes ``x @ W.T``;
GPT-2's ``Conv1D`` stores ``W [in, out]`` and computes ``x @ W``. ``mlp_out_transposed``
tells editors which one they hold, so a rank-one update ``u vᵀ`` in the Linear
convention is stored as ``v uᵀ`` for Conv1D.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from kedit_vc.errors import ModelError


@dataclass(frozen=True)
class Family:
    """Module paths (dotted, ``{i}`` = block index) of one architecture family."""

    name: str
    model_types: tuple[str, ...]
    base: str                # the decoder without its LM head (returns final-normed states)
    blocks: str              # the ModuleList of transformer blocks
    mlp: str                 # a block's MLP (its output is added to the residual stream)
    attn: str                # a block's attention (its output is added to the residual stream)
    mlp_out: str             # the MLP's output projection: the matrix ROME/MEMIT edit
    mlp_in: str              # the MLP's input (up) projection
    embed: str               # token embedding
    final_norm: str          # norm before the unembedding
    unembed: str             # the LM head
    mlp_out_transposed: bool = False  # True for Conv1D ([in, out]) weights

    def block_path(self, layer: int) -> str:
        return f"{self.blocks}.{layer}"

    def mlp_path(self, layer: int) -> str:
        return f"{self.block_path(layer)}.{self.mlp}"

    def attn_path(self, layer: int) -> str:
        return f"{self.block_path(layer)}.{self.attn}"

    def mlp_out_path(self, layer: int) -> str:
        return f"{self.block_path(layer)}.{self.mlp_out}"

    def mlp_out_weight_name(self, layer: int) -> str:
        """The state-dict key of the edited matrix at ``layer``."""
        return f"{self.mlp_out_path(layer)}.weight"


FAMILIES: tuple[Family, ...] = (
    Family(
        name="llama",
        model_types=("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text",
                     "olmo", "olmo2", "smollm3", "granite"),
        base="model", blocks="model.layers", mlp="mlp", attn="self_attn",
        mlp_out="mlp.down_proj", mlp_in="mlp.up_proj",
        embed="model.embed_tokens", final_norm="model.norm", unembed="lm_head",
    ),
    Family(
        name="gpt2",
        model_types=("gpt2",),
        base="transformer", blocks="transformer.h", mlp="mlp", attn="attn",
        mlp_out="mlp.c_proj", mlp_in="mlp.c_fc",
        embed="transformer.wte", final_norm="transformer.ln_f", unembed="lm_head",
        mlp_out_transposed=True,
    ),
    Family(
        name="gptj",
        model_types=("gptj",),
        base="transformer", blocks="transformer.h", mlp="mlp", attn="attn",
        mlp_out="mlp.fc_out", mlp_in="mlp.fc_in",
        embed="transformer.wte", final_norm="transformer.ln_f", unembed="lm_head",
    ),
    Family(
        name="gpt_neox",
        model_types=("gpt_neox",),
        base="gpt_neox", blocks="gpt_neox.layers", mlp="mlp", attn="attention",
        mlp_out="mlp.dense_4h_to_h", mlp_in="mlp.dense_h_to_4h",
        # unembed was "embed_out" before transformers 5
        embed="gpt_neox.embed_in", final_norm="gpt_neox.final_layer_norm", unembed="lm_head",
    ),
)


def supported_model_types() -> list[str]:
    return sorted(t for family in FAMILIES for t in family.model_types)


def family_for_model_type(model_type: str) -> Family:
    """The family of a ``config.model_type``; a clear error naming the supported ones."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise ModelError(
        f"unsupported architecture {model_type!r}; supported: {', '.join(supported_model_types())}. "
        "To add one, append a Family(...) with its module paths to FAMILIES in "
        "kedit_vc/models/families.py"
    )


def family_of(model: torch.nn.Module) -> Family:
    config: Any = model.config  # a transformers config (torch types module attributes as Tensor | Module)
    return family_for_model_type(config.model_type)


def get_module(model: torch.nn.Module, path: str) -> torch.nn.Module:
    """The submodule at a dotted path, with an error that names the missing part."""
    try:
        return model.get_submodule(path)
    except AttributeError as error:
        raise ModelError(f"model has no module {path!r} ({error})") from None


def decoder_stack(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder without its LM head (``model.model`` for Llama): called on ``input_ids`` and an
    attention mask it returns the final-normed hidden states [b, t, d_model]. Scoring, key
    collection and the side memories' routers all go through it, so hooks placed here see
    every forward."""
    return get_module(model, family_of(model).base)


def blocks_of(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder blocks, in order."""
    path = family_of(model).blocks
    blocks = get_module(model, path)
    if not isinstance(blocks, torch.nn.ModuleList):
        raise ModelError(f"model's {path!r} is a {type(blocks).__name__}, not a list of blocks")
    return blocks


def weight_of(module: torch.nn.Module) -> torch.Tensor:
    """``module.weight`` as the tensor it is (torch types module attributes as Tensor | Module)."""
    weight = module.weight
    if not isinstance(weight, torch.Tensor):
        raise ModelError(f"{type(module).__name__}.weight is a {type(weight).__name__}, not a tensor")
    return weight


def num_layers(model: torch.nn.Module) -> int:
    return len(blocks_of(model))


@dataclass(frozen=True)
class Dimensions:
    """Sizes editors need: residual width, MLP hidden width, layers, vocabulary."""

    d_model: int
    d_mlp: int
    n_layers: int
    vocab: int


def dimensions(model: torch.nn.Module) -> Dimensions:
    family = family_of(model)
    weight = weight_of(get_module(model, family.mlp_out_path(0)))
    d_mlp, d_model = (weight.shape[0], weight.shape[1]) if family.mlp_out_transposed else (
        weight.shape[1], weight.shape[0])
    vocab = weight_of(get_module(model, family.unembed)).shape[0]
    return Dimensions(d_model=d_model, d_mlp=d_mlp, n_layers=num_layers(model), vocab=vocab)


def max_positions(model: torch.nn.Module, default: int = 2048) -> int:
    """The longest sequence the model accepts (GPT-2's learned positions stop at n_positions)."""
    config = model.config
    for attribute in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


def mlp_out_weight(model: torch.nn.Module, layer: int) -> torch.Tensor:
    """The edited matrix in the Linear convention ``[d_model, d_mlp]`` (a view when possible)."""
    family = family_of(model)
    weight = weight_of(get_module(model, family.mlp_out_path(layer)))
    return weight.T if family.mlp_out_transposed else weight


def describe(model: torch.nn.Module) -> dict[str, Any]:
    """A JSON-able summary for ``kvc model info``."""
    family = family_of(model)
    dims = dimensions(model)
    config: Any = model.config
    return {
        "family": family.name,
        "model_type": config.model_type,
        "layers": dims.n_layers,
        "d_model": dims.d_model,
        "d_mlp": dims.d_mlp,
        "vocab": dims.vocab,
        "parameters": sum(p.numel() for p in model.parameters()),
        "edited_matrix": family.mlp_out_weight_name(0).replace(".0.", ".{i}.", 1),
    }

"""SelfIE-style readout (Chen et al. 2024, "SelfIE: Self-Interpretation of LLM Embeddings").

Take the subject's hidden state at one layer, put it in place of a placeholder token's
state at the same layer of an interpretation prompt, and let the model describe it. The
relevancy of each generated token is p(token | injected) - p(token | same prompt, no
injection): how much the injected state, not the prompt, drives it.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ContextManager, Sequence

import torch

from kedit_vc.errors import UsageError
from kedit_vc.models.families import family_of, get_module, num_layers
from kedit_vc.models.forward import decode_step, final_hidden
from kedit_vc.models.hooks import edit_output, record_outputs
from kedit_vc.models.prompting import encode_text

from .defaults import MAX_NEW_TOKENS
from .tokens import locate_subject, token_label

#: The user turn of the interpretation prompt; ``{}`` becomes the placeholder(s).
INSTRUCTION = "{} Please describe this in a few words:"
PLACEHOLDER = "X"


@dataclass(frozen=True)
class InterpretationPrompt:
    """Token ids of the (chat-formatted) interpretation prompt and its placeholder positions."""

    ids: tuple[int, ...]
    positions: tuple[int, ...]


@dataclass(frozen=True)
class SelfieResult:
    """A readout: ``text`` generated with the state injected, ``baseline`` without it.

    ``tokens[i]`` is the i-th generated token and ``relevancy[i]`` its probability with
    the injection minus without (same preceding tokens).
    """

    source: str
    subject: str
    layer: int
    instruction: str
    text: str
    tokens: tuple[str, ...]
    relevancy: tuple[float, ...]
    baseline: str

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "subject": self.subject, "layer": self.layer,
                "instruction": self.instruction, "text": self.text, "tokens": list(self.tokens),
                "relevancy": [round(r, 6) for r in self.relevancy], "baseline": self.baseline}


def _chat_text(tokenizer: Any, content: str) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                             tokenize=False, add_generation_prompt=True)
    return content


def interpretation_prompt(tokenizer: Any, instruction: str = INSTRUCTION, placeholder: str = PLACEHOLDER,
                          copies: int = 1) -> InterpretationPrompt:
    """Encode ``instruction`` (with ``{}``) as a user turn; find each placeholder token.

    The chat template is rendered around a marker, then the text up to each placeholder
    is tokenized on its own: its last token is the placeholder, provided the full
    prompt's tokens start the same way (checked).
    """
    if "{}" not in instruction:
        raise UsageError(f"the interpretation instruction {instruction!r} has no {{}} for the placeholder")
    marker = "\u2063"  # an invisible separator no template contains
    text = _chat_text(tokenizer, instruction.replace("{}", marker, 1))
    before, after = text.split(marker, 1)
    fills = " ".join([placeholder] * copies)
    ids = encode_text(tokenizer, before + fills + after)
    positions = []
    for n in range(1, copies + 1):
        head = encode_text(tokenizer, before + " ".join([placeholder] * n))
        if ids[: len(head)] != head:
            raise UsageError(f"the placeholder {placeholder!r} is not a token of its own in {text!r}")
        positions.append(len(head) - 1)
    return InterpretationPrompt(ids=tuple(ids), positions=tuple(positions))


def subject_state(model: torch.nn.Module, tokenizer: Any, prompt: str, subject: str, layer: int) -> torch.Tensor:
    """Block ``layer``'s output at the subject's last token: [d_model]."""
    loc = locate_subject(tokenizer, prompt, subject)
    block = get_module(model, family_of(model).block_path(layer))
    with torch.no_grad(), record_outputs({"b": block}) as seen:
        final_hidden(model, torch.tensor([list(loc.ids)]))
    return seen["b"][0, loc.last].detach().clone()


def _injecting(model: torch.nn.Module, layer: int, positions: Sequence[int], state: torch.Tensor,
               rows: int = 1) -> ContextManager[None]:
    """Replace block ``layer``'s output at ``positions`` of the first ``rows`` rows by ``state``.

    Only passes that still contain the placeholders patch (later cached decode steps
    see one token and are left alone).
    """
    block = get_module(model, family_of(model).block_path(layer))
    index = torch.tensor(list(positions))

    def inject(hidden: torch.Tensor) -> torch.Tensor:  # [b, t, d]
        if hidden.shape[1] <= int(index.max()):
            return hidden
        hidden = hidden.clone()
        hidden[:rows, index] = state.to(hidden.dtype)
        return hidden
    return edit_output(block, inject)


def _stop_ids(tokenizer: Any) -> set[int]:
    stops = {tokenizer.eos_token_id}
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(end, int) and tokenizer.convert_ids_to_tokens(end) == "<|im_end|>":
        stops.add(end)
    return {s for s in stops if s is not None}


def greedy(model: torch.nn.Module, ids: Sequence[int], max_new_tokens: int, stops: set[int],
           patch: ContextManager[None] | None = None) -> list[int]:
    """Greedy continuation of ``ids`` with a KV cache, under ``patch`` (a hook context)."""
    generated: list[int] = []
    with torch.no_grad(), patch or nullcontext():
        logits, cache = decode_step(model, torch.tensor([list(ids)]))
        for _ in range(max_new_tokens):
            token = int(logits[0, -1].argmax())
            if token in stops:
                break
            generated.append(token)
            logits, cache = decode_step(model, torch.tensor([[token]]), cache)
    return generated


def selfie_readout(model: torch.nn.Module, tokenizer: Any, state: torch.Tensor, layer: int, *,
                   instruction: str = INSTRUCTION, placeholder: str = PLACEHOLDER, copies: int = 1,
                   max_new_tokens: int = MAX_NEW_TOKENS, source: str = "", subject: str = "") -> SelfieResult:
    """Inject ``state`` [d_model] at block ``layer`` of the interpretation prompt and generate."""
    if not 0 <= layer < num_layers(model):
        raise UsageError(f"layer {layer} is out of range 0..{num_layers(model) - 1}")
    prompt = interpretation_prompt(tokenizer, instruction, placeholder, copies)
    stops = _stop_ids(tokenizer)
    made = greedy(model, prompt.ids, max_new_tokens, stops, _injecting(model, layer, prompt.positions, state))
    plain = greedy(model, prompt.ids, max_new_tokens, stops)
    relevancy: list[float] = []
    if made:
        full = torch.tensor([list(prompt.ids) + made] * 2)  # row 0 injected, row 1 not
        with torch.no_grad(), _injecting(model, layer, prompt.positions, state, rows=1):
            logits = model(input_ids=full, use_cache=False).logits  # [2, t, vocab]
        start = len(prompt.ids) - 1
        probs = torch.softmax(logits[:, start:start + len(made)].float(), dim=-1)
        picked = probs[:, torch.arange(len(made)), torch.tensor(made)]  # [2, n]
        relevancy = [float(v) for v in picked[0] - picked[1]]
    return SelfieResult(
        source=source, subject=subject, layer=layer, instruction=instruction,
        text=tokenizer.decode(made, skip_special_tokens=True),
        tokens=tuple(token_label(tokenizer, t) for t in made), relevancy=tuple(relevancy),
        baseline=tokenizer.decode(plain, skip_special_tokens=True),
    )


def selfie(model: torch.nn.Module, tokenizer: Any, prompt: str, subject: str, layer: int,
           **options: Any) -> SelfieResult:
    """Read out the subject's last-token state at ``layer`` of ``prompt`` (see ``selfie_readout``)."""
    state = subject_state(model, tokenizer, prompt, subject, layer)
    loc_text = locate_subject(tokenizer, prompt, subject).text
    return selfie_readout(model, tokenizer, state, layer, source=loc_text, subject=subject, **options)

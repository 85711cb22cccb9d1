"""Causal tracing (Meng et al. 2022, "Locating and Editing Factual Associations in GPT").

Corrupt the subject's token embeddings with Gaussian noise, then, one (token, layer) at a
time, restore the clean run's hidden state there and measure how much of the target's
probability comes back. States that restore it carry the fact; ROME edits the MLP where
restoring the last subject token matters most.

Kinds: ``residual`` restores a block's output; ``mlp`` / ``attn`` restore that module's
output at ``window`` consecutive layers centred on the layer (the paper used 10 of
GPT-2 XL's 48 layers; 5 suits 30-layer models), since a single MLP's effect is small.
Each score is averaged over ``samples`` noise draws from a seeded generator.
"""

from __future__ import annotations

import functools
import math
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch

from kedit_vc.errors import UsageError
from kedit_vc.models.families import family_of, get_module, num_layers, weight_of
from kedit_vc.models.forward import final_hidden, logits_from_hidden
from kedit_vc.models.hooks import edit_output, record_outputs

from .defaults import DEFAULT_SAMPLES, DEFAULT_WINDOW, KINDS, NOISE_FACTOR
from .replay import start_at
from .tokens import locate_subject, target_ids, token_label

if TYPE_CHECKING:
    from kedit_vc.compiler.plan import EditRequest



@dataclass(frozen=True)
class TraceResult:
    """Recovered target probabilities, tokens x layers.

    ``tokens`` are the prompt's tokens after the shared prefix; ``subject_span`` is
    ``[start, end)`` in them. ``scores[i][j]``: p(target) with token ``i``'s state at
    ``layers[j]`` restored (NaN where not computed). ``clean_prob`` / ``corrupted_prob``:
    p(target) without noise / with noise and nothing restored.
    """

    prompt: str
    subject: str
    target: str
    kind: str
    window: int
    tokens: tuple[str, ...]
    subject_span: tuple[int, int]
    layers: tuple[int, ...]
    scores: tuple[tuple[float, ...], ...]
    clean_prob: float
    corrupted_prob: float
    samples: int
    noise: float
    seed: int

    @property
    def last_subject(self) -> int:
        return self.subject_span[1] - 1

    def score(self, token: int, layer: int) -> float:
        """Recovered p(target) at token index ``token`` and model layer ``layer``."""
        return self.scores[token][self.layers.index(layer)]

    def indirect_effect(self, token: int, layer: int) -> float:
        """How much restoring this one state recovers over the corrupted run."""
        return self.score(token, layer) - self.corrupted_prob

    @property
    def suggested_layer(self) -> int | None:
        """The layer whose restoration at the last subject token recovers the most
        (None if that token was not traced)."""
        row = self.scores[self.last_subject]
        done = [j for j in range(len(self.layers)) if not math.isnan(row[j])]
        return self.layers[max(done, key=lambda j: row[j])] if done else None

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt, "subject": self.subject, "target": self.target, "kind": self.kind,
            "window": self.window, "tokens": list(self.tokens), "subject_span": list(self.subject_span),
            "layers": list(self.layers),
            "scores": [[None if math.isnan(v) else round(v, 6) for v in row] for row in self.scores],
            "clean_prob": self.clean_prob, "corrupted_prob": self.corrupted_prob,
            "samples": self.samples, "noise": self.noise, "seed": self.seed,
            "suggested_layer": self.suggested_layer,
        }


def window_layers(layer: int, kind: str, window: int, n_layers: int) -> range:
    """Layers restored together for ``layer``: itself for residual, else a centred window."""
    if kind == "residual":
        return range(layer, layer + 1)
    return range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2)))


def _kind_module(model: torch.nn.Module, kind: str, layer: int) -> torch.nn.Module:
    family = family_of(model)
    path = {"residual": family.block_path, "mlp": family.mlp_path, "attn": family.attn_path}[kind](layer)
    return get_module(model, path)


def _block_template(model: torch.nn.Module, ids: torch.Tensor) -> Any:
    """One raw block output (tensor or tuple), so replayed blocks return the same type."""
    seen: list[Any] = []
    block = get_module(model, family_of(model).block_path(0))
    handle = block.register_forward_hook(lambda _m, _a, out: seen.append(out))
    try:
        final_hidden(model, ids)
    finally:
        handle.remove()
    return seen[0]


def causal_trace(
    model: torch.nn.Module,
    tokenizer: Any,
    prompt: str,
    subject: str,
    target: str | None = None,
    *,
    kind: str = "residual",
    window: int = DEFAULT_WINDOW,
    samples: int = DEFAULT_SAMPLES,
    noise_factor: float = NOISE_FACTOR,
    seed: int = 0,
    layers: Sequence[int] | None = None,
    tokens: Sequence[int] | None = None,
) -> TraceResult:
    """Trace where ``prompt``'s prediction of ``target`` depends on the subject's tokens.

    ``prompt`` is the full text (or a ``{}`` template) containing ``subject``. ``target``
    None traces the model's own top next token. ``layers``/``tokens`` (indices into the
    result's ``tokens``) limit the work; tokens before the subject are never run, since
    restoring a state the noise cannot reach is a no-op: they score ``corrupted_prob``.
    One forward per layer, batch ``len(tokens) * samples`` rows.
    """
    if kind not in KINDS:
        raise UsageError(f"unknown trace kind {kind!r}; choose one of {', '.join(KINDS)}")
    if samples < 1 or window < 1:
        raise UsageError("samples and window must be at least 1")
    n_layers = num_layers(model)
    layers = tuple(range(n_layers)) if layers is None else tuple(layers)
    if not layers or any(not 0 <= layer < n_layers for layer in layers):
        raise UsageError(f"layers must lie in 0..{n_layers - 1}")
    loc = locate_subject(tokenizer, prompt, subject)
    shown = len(loc.ids) - loc.prefix
    wanted = tuple(range(shown)) if tokens is None else tuple(tokens)
    if any(not 0 <= t < shown for t in wanted):
        raise UsageError(f"token indices must lie in 0..{shown - 1}")

    family = family_of(model)
    embed = get_module(model, family.embed)
    blocks = [get_module(model, family.block_path(i)) for i in range(n_layers)]
    prompt_ids = torch.tensor([loc.ids])
    with torch.no_grad():
        if target is None:
            top = int(logits_from_hidden(model, final_hidden(model, prompt_ids)[0, -1]).argmax())
            goal = [top]
        else:
            goal = target_ids(tokenizer, target)
        ids = torch.tensor([list(loc.ids) + goal[:-1]])  # [1, t]
        reads = torch.arange(len(loc.ids) - 1, len(loc.ids) - 1 + len(goal))
        goal_t = torch.tensor(goal)

        def target_prob(hidden: torch.Tensor) -> torch.Tensor:  # hidden [b, t, d] -> [b]
            logp = torch.log_softmax(logits_from_hidden(model, hidden[:, reads]).float(), dim=-1)
            return logp[:, torch.arange(len(goal)), goal_t].sum(-1).exp()

        noise_std = noise_factor * float(weight_of(embed).float().std())
        generator = torch.Generator().manual_seed(seed)
        d_model = weight_of(embed).shape[1]
        noise = torch.randn(samples, loc.end - loc.start, d_model, generator=generator) * noise_std

        def corrupt(hidden: torch.Tensor) -> torch.Tensor:  # [b, t, d], b a multiple of samples
            hidden = hidden.clone()
            reps = hidden.shape[0] // samples
            hidden[:, loc.start:loc.end] += noise.repeat(reps, 1, 1).to(hidden.dtype)
            return hidden

        kind_modules = {i: _kind_module(model, kind, i) for i in range(n_layers)}
        watched = {f"block{i}": b for i, b in enumerate(blocks)}
        watched.update({f"{kind}{i}": m for i, m in kind_modules.items()})
        with record_outputs(watched) as seen:
            clean_prob = float(target_prob(final_hidden(model, ids))[0])
        clean = {i: seen[f"{kind}{i}"].detach() for i in range(n_layers)}  # [1, t, d]
        with edit_output(embed, corrupt), record_outputs({f"block{i}": b for i, b in enumerate(blocks)}) as seen:
            corrupted_prob = float(target_prob(final_hidden(model, ids.repeat(samples, 1))).mean())
        corrupted = {i: seen[f"block{i}"].detach() for i in range(n_layers)}  # [samples, t, d]
        template = _block_template(model, ids)

        run = [t for t in wanted if t + loc.prefix >= loc.start]
        positions = torch.tensor([t + loc.prefix for t in run], dtype=torch.long)
        cols = positions.repeat_interleave(samples)  # row r = token (r // samples), sample (r % samples)
        rows = torch.arange(len(cols))
        scores = [[math.nan] * len(layers) for _ in range(shown)]
        for t in wanted:
            if t + loc.prefix < loc.start:
                scores[t] = [corrupted_prob] * len(layers)
        for j, layer in enumerate(layers if run else ()):
            span = window_layers(layer, kind, window, n_layers)

            def restore(hidden: torch.Tensor, _l: int) -> torch.Tensor:
                hidden = hidden.clone()
                hidden[rows, cols] = clean[_l][0, cols].to(hidden.dtype)
                return hidden

            lower = corrupted[span.start - 1].repeat(len(run), 1, 1) if span.start > 0 else None
            with ExitStack() as stack:
                stack.enter_context(edit_output(embed, corrupt))
                stack.enter_context(start_at(model, span.start, lower, template))
                for layer in span:
                    stack.enter_context(edit_output(kind_modules[layer], functools.partial(restore, _l=layer)))
                recovered = target_prob(final_hidden(model, ids.repeat(len(cols), 1)))
            for i, t in enumerate(run):
                scores[t][j] = float(recovered[i * samples:(i + 1) * samples].mean())

    return TraceResult(
        prompt=loc.text, subject=subject, target=tokenizer.decode(goal), kind=kind,
        window=1 if kind == "residual" else window,
        tokens=tuple(token_label(tokenizer, i) for i in loc.ids[loc.prefix:]),
        subject_span=(loc.start - loc.prefix, loc.end - loc.prefix), layers=layers,
        scores=tuple(tuple(row) for row in scores), clean_prob=clean_prob, corrupted_prob=corrupted_prob,
        samples=samples, noise=noise_std, seed=seed,
    )


def suggest_layer(model: torch.nn.Module, tokenizer: Any, request: "EditRequest", *,
                  samples: int = DEFAULT_SAMPLES, window: int = DEFAULT_WINDOW, seed: int = 0) -> int:
    """The layer to edit for ``request`` (``layer = auto``): the MLP layer whose restoration
    at the subject's last token recovers the most of the true answer's probability.

    Traces only that one token (one forward of ``samples`` rows per layer). Without a
    ``target_true`` the model's own top answer is traced.
    """
    loc = locate_subject(tokenizer, request.prompt, request.subject)
    result = causal_trace(model, tokenizer, request.prompt, request.subject, request.target_true,
                          kind="mlp", window=window, samples=samples, seed=seed,
                          tokens=[loc.last - loc.prefix])
    assert result.suggested_layer is not None  # the last subject token was traced
    return result.suggested_layer

"""Plain-text tables of the interpretability results, for the CLI to print."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .explain import Explanation, Reading
    from .lens import LensResult
    from .readout import SelfieResult
    from .trace import TraceResult


def _cell(value: float) -> str:
    return "  ." if math.isnan(value) else f"{round(100 * value):3d}"


def render_trace(result: "TraceResult") -> str:
    """Recovered p(target) in percent, a row per token (subject starred), a column per layer."""
    width = max(len(t) for t in result.tokens) + 2
    start, end = result.subject_span
    restored = "block output" if result.kind == "residual" else f"{result.kind} output, window {result.window}"
    lines = [
        f"causal trace ({restored}) of {result.target!r} after {result.prompt!r}",
        f"clean p={result.clean_prob:.3f}  corrupted p={result.corrupted_prob:.3f}  "
        f"noise std {result.noise:.3f}, {result.samples} sample(s), seed {result.seed}",
        "p(target) in % with one state restored; rows: tokens (* = subject), columns: layers",
        " " * width + "".join(f"{layer:3d}" for layer in result.layers),
    ]
    for i, (token, row) in enumerate(zip(result.tokens, result.scores)):
        label = (token + "*") if start <= i < end else token
        lines.append(label.ljust(width) + "".join(_cell(v) for v in row))
    return "\n".join(lines) + "\n"


def render_lens(lens: "LensResult") -> str:
    """Per layer: the top tokens with probabilities, and each target's rank."""
    targets = sorted(lens.ranks)
    lines = [f"logit lens at {lens.token!r} ({lens.position}) of {lens.prompt!r}",
             "layer  " + "  ".join(f"rank {t!r}" for t in targets) + "  top tokens"]
    for layer, row in enumerate(lens.top):
        ranks = "  ".join(f"{lens.ranks[t][layer]:>{len(repr(t)) + 5}d}" for t in targets)
        tops = "  ".join(f"{tok!r} {p:.2f}" for tok, p in row)
        lines.append(f"{layer:5d}  {ranks}  {tops}")
    return "\n".join(lines) + "\n"


def render_selfie(readout: "SelfieResult", label: str = "") -> str:
    """The readout text, then each generated token with its relevancy."""
    tokens = " ".join(f"{t!r}:{r:+.2f}" for t, r in zip(readout.tokens, readout.relevancy))
    head = f"{label}SelfIE at layer {readout.layer}: {readout.text!r}"
    return f"{head}\n  relevancy per token: {tokens}\n  without injection: {readout.baseline!r}\n"


def _side(reading: "Reading", position: str, target: str, layer: int) -> str:
    lens = reading.lens_subject if position == "subject" else reading.lens_last
    return f"{lens.ranks[target][layer]:6d}"


def render_explanation(explanation: "Explanation") -> str:
    """Before/after ranks of the new and old objects per layer, top tokens, SelfIE readouts."""
    targets = [explanation.target_new] + ([explanation.target_true] if explanation.target_true else [])
    was = f" (was {explanation.target_true!r})" if explanation.target_true else ""
    lines = [
        f"edit {explanation.edit_id}: {explanation.prompt!r} -> {explanation.target_new!r}{was}",
        f"edited layers: {list(explanation.edited_layers) or 'none'}",
        "logit lens ranks (1 = top), before -> after; subj = subject's last token "
        f"{explanation.before.lens_subject.token!r}, last = the prompt's last token",
    ]
    header = "layer " + "".join(f" {pos}:{t!r}".rjust(22) for t in targets for pos in ("subj", "last"))
    lines.append(header + "   top-1 at subj before -> after")
    for layer in range(explanation.before.lens_subject.layers):
        marks = "*" if layer in explanation.edited_layers else " "
        cells = "".join(
            f"{_side(explanation.before, pos, t, layer)} ->{_side(explanation.after, pos, t, layer)}".rjust(22)
            for t in targets for pos in ("subject", "last"))
        top_before = explanation.before.lens_subject.top[layer][0][0]
        top_after = explanation.after.lens_subject.top[layer][0][0]
        lines.append(f"{layer:4d}{marks} {cells}   {top_before!r} -> {top_after!r}")
    lines.append("")
    lines.append(render_selfie(explanation.before.selfie, "before: ").rstrip("\n"))
    lines.append(render_selfie(explanation.after.selfie, "after:  ").rstrip("\n"))
    return "\n".join(lines) + "\n"

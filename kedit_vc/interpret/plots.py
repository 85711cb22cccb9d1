"""PNG figures for traces, logit lenses and edit explanations (matplotlib, Agg canvas).

Figures are drawn on ``matplotlib.figure.Figure`` with an Agg canvas, never pyplot, so
no global backend is set and nothing needs a display. Sizes are fixed (pixels at 100
dpi, no tight bounding box) so a file's size is documented and testable:
trace and lens 1200x600, explanation 1200x900.
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedit_vc.fsio import atomic_path

if TYPE_CHECKING:
    from .explain import Explanation
    from .lens import LensResult
    from .trace import TraceResult

DPI = 100
TRACE_SIZE_PX = (1200, 600)
LENS_SIZE_PX = (1200, 600)
EXPLAIN_SIZE_PX = (1200, 900)
TRACE_COLORMAPS = {"residual": "Purples", "mlp": "Greens", "attn": "Reds"}  # as in the ROME paper


def _figure(size_px: tuple[int, int]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size_px[0] / DPI, size_px[1] / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | os.PathLike[str]) -> Path:
    """Write the PNG atomically (temporary file in the same folder, then rename)."""
    target = Path(path)
    with atomic_path(target) as temporary:
        figure.savefig(temporary, dpi=DPI, format="png")
    return target


def plot_trace(result: "TraceResult", path: str | os.PathLike[str], suggested: int | None = None) -> Path:
    """Heatmap of recovered p(target), tokens (rows) x layers (columns); subject tokens starred.

    ``suggested``: an edit layer to name in the title (``suggest_layer``'s answer, which
    comes from an MLP trace even when this one is residual or attention).
    """
    import numpy as np

    figure = _figure(TRACE_SIZE_PX)
    axes = figure.add_subplot(1, 1, 1)
    scores = np.ma.masked_invalid(np.array(result.scores, dtype=float))
    image = axes.imshow(scores, aspect="auto", cmap=TRACE_COLORMAPS[result.kind], vmin=result.corrupted_prob,
                        interpolation="nearest")
    start, end = result.subject_span
    axes.set_yticks(range(len(result.tokens)))
    axes.set_yticklabels([f"{t}*" if start <= i < end else t for i, t in enumerate(result.tokens)])
    for i, label in enumerate(axes.get_yticklabels()):
        if start <= i < end:
            label.set_fontweight("bold")
    axes.axhspan(start - 0.5, end - 0.5, fill=False, edgecolor="black", linewidth=1.2)
    step = max(1, math.ceil(len(result.layers) / 30))
    axes.set_xticks(range(0, len(result.layers), step))
    axes.set_xticklabels([str(result.layers[j]) for j in range(0, len(result.layers), step)])
    what = "block output" if result.kind == "residual" else f"{result.kind} output, window {result.window}"
    axes.set_xlabel(f"layer (restored: {what})")
    note = f", suggested edit layer {suggested}" if suggested is not None else ""
    axes.set_title(f"Causal trace of {result.target!r} after {result.prompt!r}: clean p={result.clean_prob:.3f}, "
                   f"corrupted p={result.corrupted_prob:.3f}{note}", fontsize=10)
    figure.colorbar(image, ax=axes, label=f"p({result.target.strip()}) with the state restored")
    figure.subplots_adjust(left=0.12, right=0.97, top=0.92, bottom=0.1)
    return _save(figure, path)


def _lens_grid(axes: Any, lens: "LensResult", title: str) -> None:
    """Top tokens per layer as a coloured grid: rows = layers, columns = rank 1..k."""
    import numpy as np

    probs = np.array([[p for _, p in row] for row in lens.top])
    axes.imshow(probs, aspect="auto", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    for layer, row in enumerate(lens.top):
        for k, (token, p) in enumerate(row):
            axes.text(k, layer, token[:12], ha="center", va="center", fontsize=6,
                      color="white" if p > 0.6 else "black")
    axes.set_yticks(range(len(lens.top)))
    axes.set_yticklabels([str(i) for i in range(len(lens.top))], fontsize=6)
    axes.set_xticks(range(probs.shape[1]))
    axes.set_xticklabels([f"top {k + 1}" for k in range(probs.shape[1])], fontsize=7)
    axes.set_ylabel("layer")
    axes.set_title(title, fontsize=9)


def _rank_lines(axes: Any, series: dict[str, tuple[int, ...]], title: str) -> None:
    """One line per series; "before: X" dashed and "after: X" solid in X's colour."""
    colours: dict[str, str] = {}
    for label, ranks in series.items():
        side, _, target = label.partition(": ")
        colour = colours.setdefault(target or label, f"C{len(colours)}")
        style = "--" if side == "before" else "-"
        axes.plot(range(len(ranks)), ranks, style, marker=".", color=colour, label=label)
    axes.set_yscale("log")
    axes.invert_yaxis()
    axes.set_xlabel("layer")
    axes.set_ylabel("rank (1 = top)")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)


def plot_lens(lens: "LensResult", path: str | os.PathLike[str]) -> Path:
    """Top tokens per layer (left) and the targets' ranks per layer (right)."""
    figure = _figure(LENS_SIZE_PX)
    _lens_grid(figure.add_subplot(1, 2, 1), lens, f"logit lens at {lens.token!r} ({lens.position}) of {lens.prompt!r}")
    _rank_lines(figure.add_subplot(1, 2, 2), dict(lens.ranks), "target ranks")
    figure.subplots_adjust(left=0.06, right=0.98, top=0.93, bottom=0.09, wspace=0.25)
    return _save(figure, path)


def plot_explanation(explanation: "Explanation", path: str | os.PathLike[str]) -> Path:
    """Before/after: old and new objects' lens ranks at the subject and at the prompt's
    last token (top), and the SelfIE readouts side by side (bottom)."""
    figure = _figure(EXPLAIN_SIZE_PX)
    grid = figure.add_gridspec(2, 2, height_ratios=[3, 1.4])
    targets = [explanation.target_new] + ([explanation.target_true] if explanation.target_true else [])
    for column, position in enumerate(("subject", "last")):
        series: dict[str, tuple[int, ...]] = {}
        for side, reading in (("before", explanation.before), ("after", explanation.after)):
            lens = reading.lens_subject if position == "subject" else reading.lens_last
            for target in targets:
                series[f"{side}: {target}"] = lens.ranks[target]
        axes = figure.add_subplot(grid[0, column])
        token = (explanation.before.lens_subject if position == "subject" else explanation.before.lens_last).token
        whose = "subject" if position == "subject" else "prompt"
        _rank_lines(axes, series, f"logit lens at {token!r} ({whose}'s last token)")
        for layer in explanation.edited_layers:
            axes.axvline(layer, color="grey", linewidth=0.8, linestyle=":")
    for column, (side, reading) in enumerate((("before", explanation.before), ("after", explanation.after))):
        axes = figure.add_subplot(grid[1, column])
        axes.axis("off")
        readout = reading.selfie
        mean = sum(readout.relevancy) / len(readout.relevancy) if readout.relevancy else 0.0
        body = textwrap.fill(readout.text or "(nothing generated)", 60)
        axes.text(0, 1, f"SelfIE {side} (layer {readout.layer}, mean relevancy {mean:+.2f}):\n{body}",
                  va="top", ha="left", fontsize=9, family="monospace", transform=axes.transAxes)
    figure.suptitle(f"{explanation.edit_id}: {explanation.prompt!r} -> {explanation.target_new!r}"
                    + (f" (was {explanation.target_true!r})" if explanation.target_true else "")
                    + f"; edited layers {list(explanation.edited_layers)}", fontsize=10)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.93, bottom=0.03, wspace=0.2, hspace=0.25)
    return _save(figure, path)

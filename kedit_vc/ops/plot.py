"""The sequential-editing curve as a PNG: metrics of all live edits after each commit."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from kedit_vc.eval.registry import HEADLINES

from .evaluate import HistoryPoint

CURVES = tuple(HEADLINES)


def plot_history(points: Sequence[HistoryPoint], path: str | Path) -> Path:
    """Write one line per headline metric against the commit index (Agg backend, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = list(range(1, len(points) + 1))
    for name in CURVES:
        ys = [p.evaluation.report.metrics.get(name, float("nan")) for p in points]
        if any(y == y for y in ys):
            ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel("commit (oldest first)")
    ax.set_ylabel("metric over live edits")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(xs, [p.record.short[:7] for p in points], rotation=45, fontsize=7)
    ax.legend(loc="lower left")
    ax.set_title("kvc eval --history")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out

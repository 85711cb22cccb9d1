"""Efficiency measurements: wall time, peak memory and delta size, as report metrics."""

from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import torch


@dataclass(frozen=True)
class Efficiency:
    """What an edit cost. Peak RSS is the process's high-water mark (it never goes down)."""

    seconds: float
    peak_rss_bytes: int
    peak_gpu_bytes: int | None = None
    delta_bytes: int | None = None

    def as_metrics(self) -> dict[str, float]:
        out = {"seconds": self.seconds, "peak_rss_bytes": float(self.peak_rss_bytes)}
        if self.peak_gpu_bytes is not None:
            out["peak_gpu_bytes"] = float(self.peak_gpu_bytes)
        if self.delta_bytes is not None:
            out["delta_bytes"] = float(self.delta_bytes)
        return out


def machine_facts() -> dict[str, Any]:
    """Where and when a measurement was taken (saved beside every benchmark figure)."""
    import datetime
    import os
    import platform

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def peak_rss_bytes() -> int:
    """The process's peak resident set size (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def delta_bytes(delta: Any) -> int:
    """Bytes a delta stores: its ``summary().stored_bytes`` (kedit_vc.delta), else its tensors."""
    summary = getattr(delta, "summary", None)
    return int(summary().stored_bytes) if callable(summary) else tensor_bytes(delta)


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor reachable in ``obj`` (tensors, mappings, sequences, or attributes)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    if hasattr(obj, "__dict__"):
        return sum(tensor_bytes(v) for v in vars(obj).values())
    return 0


@dataclass
class Stopwatch:
    """Filled when the ``measure()`` block ends."""

    result: Efficiency | None = field(default=None)


@contextmanager
def measure() -> Iterator[Stopwatch]:
    """Time a block and record peak memory (GPU peak is reset at the start when on CUDA)."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    watch = Stopwatch()
    start = time.perf_counter()
    try:
        yield watch
    finally:
        watch.result = Efficiency(
            seconds=time.perf_counter() - start,
            peak_rss_bytes=peak_rss_bytes(),
            peak_gpu_bytes=int(torch.cuda.max_memory_allocated()) if cuda else None,
        )

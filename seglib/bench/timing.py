"""Timing helpers of the benchmark: sides taking turns, a result row, peak memory."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    a: Callable[[], float], b: Callable[[], float], reps: int, warmup: int = 1
) -> tuple[list[float], list[float]]:
    """Run a and b alternately: `warmup` untimed rounds, then `reps` rounds. Each returns its own measure."""
    for _ in range(warmup):
        a(), b()
    ra, rb = [], []
    for _ in range(reps):
        ra.append(a())
        rb.append(b())
    return ra, rb


def row(
    what: str, unit: str, ref: list[float], fast: list[float], higher_is_better: bool = True
) -> dict[str, Any]:
    mr, mf = statistics.median(ref), statistics.median(fast)
    return {
        "what": what,
        "unit": unit,
        "reference": mr,
        "seglib": mf,
        "ratio": (mf / mr if higher_is_better else mr / mf) if mr and mf else None,
        "reference_min": min(ref),
        "reference_max": max(ref),
        "seglib_min": min(fast),
        "seglib_max": max(fast),
        "reps": len(ref),
    }


def info_row(what: str, unit: str, seglib: float) -> dict[str, Any]:
    """A row with seglib's figure only (no reference to compare with)."""
    return {"what": what, "unit": unit, "reference": None, "seglib": seglib, "ratio": None}


def memory_row(what: str, unit: str, ref: float, fast: float) -> dict[str, Any]:
    """Peak memory of each side; the ratio reads as "times less than the reference"."""
    return {
        "what": f"{what} memory",
        "unit": unit,
        "reference": ref,
        "seglib": fast,
        "ratio": ref / fast if fast else None,
    }


class PeakRSS:
    """Samples this process's resident memory every 20 ms; `peak` in MB (CPU) or max allocated (CUDA)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak, self._stop = device, 0.0, threading.Event()

    def __enter__(self) -> PeakRSS:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            with open("/proc/self/statm") as f:
                self.peak = max(self.peak, int(f.read().split()[1]) * page / 2**20)
            time.sleep(0.02)

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()


def timed(run: Callable[[], None], device: torch.device, peaks: dict[str, float], key: str) -> float:
    """Seconds `run` takes; the highest memory it reached (`PeakRSS`) is kept in `peaks[key]`."""
    with PeakRSS(device) as mem:
        sync(device)
        t = time.perf_counter()
        run()
        dt = time.perf_counter() - t
    peaks[key] = max(peaks.get(key, 0), mem.peak)
    return dt


def row_text(r: dict[str, Any]) -> str:
    """A row as one line of the log: both sides, the unit and the ratio."""
    ratio = f"{r['ratio']:.2f}x" if r.get("ratio") else "-"
    return f"{r['what']}: reference {r['reference']:.2f}, seglib {r['seglib']:.2f} {r['unit']} ({ratio})"

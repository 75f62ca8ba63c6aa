"""What the benchmark ran on: the machine's facts, its matmul ceilings and its memory bandwidth."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any

import torch

from ..data.decode import DECODER
from ..engine.runtime import amp_dtype, cpu_name, default_amp, native_bf16
from .roofline import memory_bandwidth
from .timing import info_row, sync


def matmul_ceiling(device: torch.device, n: int, reps: int, dtype: torch.dtype = torch.float32) -> float:
    """Matmul GFLOP/s in `dtype`: the best of `reps` timings of 3 back-to-back products (a ceiling)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        for _ in range(3):
            a @ b
        sync(device)
        times.append((time.perf_counter() - t) / 3)
    return 2 * n**3 / min(times) / 1e9


def machine_facts(dev: torch.device, quick: bool) -> dict[str, Any]:
    """The result's frame: what ran where, with empty `rows` and `choices`."""
    return {
        "machine": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
        "quick": quick,
        "amp": default_amp(dev),
        "native_bf16": native_bf16(dev),
        "decoder": DECODER,  # what decodes the JPEGs and PNGs: TorchCodec, or Pillow where it is missing
        # how loader workers start: under spawn (macOS, Windows) the reference's per-repetition workers
        # start slowly, and its data and evaluation rows time mostly that
        "start_method": multiprocessing.get_start_method(allow_none=True)
        or multiprocessing.get_all_start_methods()[0],  # the default: asking for it would fix it
        "rows": [],
        "choices": {},  # the memory format seglib trained in, per step row and for the epoch
    }


def ceiling_rows(
    rows: list[dict[str, Any]], dev: torch.device, n: int, reps: int, log: Callable[[str], Any]
) -> float:
    """Adds the matmul ceiling rows; returns the ceiling seglib's steps compare with: bf16's where seglib
    trains in bf16 (the device has it natively), else fp32's."""
    ceiling = matmul_ceiling(dev, n, reps)
    rows.append(
        {**info_row(f"fp32 matmul {n}x{n} ceiling", "GFLOP/s", ceiling), "reference": ceiling, "ratio": 1.0}
    )
    log(f"fp32 matmul ceiling {ceiling:.0f} GFLOP/s")
    if not (default_amp(dev) and amp_dtype(dev) == torch.bfloat16):
        return ceiling
    fast_ceiling = matmul_ceiling(dev, n, reps, torch.bfloat16)
    rows.append(info_row(f"bf16 matmul {n}x{n} ceiling", "GFLOP/s", fast_ceiling))
    log(f"bf16 matmul ceiling {fast_ceiling:.0f} GFLOP/s")
    return fast_ceiling


def bandwidth_rows(
    rows: list[dict[str, Any]], dev: torch.device, reps: int, log: Callable[[str], Any]
) -> float:
    """Adds the copy bandwidth row (the roofline's other side: the step rows give their bound and share)."""
    bandwidth = memory_bandwidth(dev, reps)
    rows.append(info_row("memory bandwidth (copy)", "GB/s", bandwidth))
    log(f"memory bandwidth {bandwidth:.0f} GB/s")
    return bandwidth

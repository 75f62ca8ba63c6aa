"""The fastest memory format for this machine, model and size: a short probe, cached per CPU model.

channels_last (NHWC) is what GPUs and most CPUs train fastest in, but not all: on a CPU without native
bf16 such as AMD Zen 3, oneDNN's backward-weights pass in NHWC runs at a fraction of its NCHW speed
(docs/performance.md, "memory format"), so the whole UNet step is slower than NCHW. `channels_last=None`
(TrainConfig's default) therefore measures both on the run's own model and image size: a few training
steps each, interleaved, on random data, with every random generator put back afterwards. The answer is
cached per CPU model, torch version, threads, allocator, model, size, batch and precision in
`$SEGLIB_PROBE_CACHE` (default ~/.cache/seglib/fastpath.json); CUDA keeps channels_last unprobed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from ..models import build_model
from .allocator import allocator_name
from .io import atomic_write_text
from .losses import bce_loss
from .optimizer import build_optimizer
from .runtime import autocast, cpu_name, native_bf16

__all__ = ["FormatChoice", "choose_memory_format", "probe_cache_path", "probe_step_rate", "FORMATS"]

FORMATS = ("channels_last", "nchw")
# A probe's rates differ by a few per cent from run to run; NCHW must win by more to replace today's
# default, so that a machine where channels_last is as good keeps it.
MARGIN = 1.05
# The probe trains at the run's own batch, up to this. At batch 2 a step is short and the two formats'
# rates moved by up to 20% between processes, so one probe picked the slower format for a whole run
# (benchmarks/probe_batch.py; docs/performance.md, "The probe at the run's batch").
PROBE_BATCH = 8
PROBE_ROUNDS = 3  # timed rounds after the warm-up, formats interleaved; the best of each counts


@dataclass(frozen=True)
class FormatChoice:
    """What a run trains in, and why: "config" (asked for), "cuda" (default there), "probe" or "cache"."""

    channels_last: bool
    source: str
    rates: dict[str, float] = field(default_factory=dict)  # images/s per format, when probed

    def describe(self) -> str:
        name = "channels_last" if self.channels_last else "NCHW"
        if not self.rates:
            return f"memory format {name} ({self.source})"
        rates = ", ".join(f"{k} {v:.3g}" for k, v in self.rates.items())
        return f"memory format {name} ({self.source}: {rates} images/s)"


def probe_cache_path() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "seglib" / "fastpath.json"
    return Path(os.environ.get("SEGLIB_PROBE_CACHE", default))


def probe_step_rate(
    model: torch.nn.Module, size: int, batch: int, channels_last: bool, amp: bool, steps: int = 1
) -> float:
    """Images/s of `steps` training steps (BCE + AdamW) of `model` on random images, after the call that
    warms it up is done by the caller. The model's weights change; pass a throw-away copy."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
    y = (torch.rand(batch, 1, size, size) > 0.5).float()
    opt = build_optimizer(model.parameters(), 1e-4, 1e-4)  # as fit() trains
    t = time.perf_counter()
    for _ in range(steps):
        with autocast(x.device, amp):
            logits = model(x)
        loss = bce_loss(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.item()
    return batch * steps / (time.perf_counter() - t)


def _probe(name: str, kwargs: dict[str, Any], size: int, batch: int, amp: bool) -> dict[str, float]:
    """Both formats: a warm-up step each, then `PROBE_ROUNDS` timed rounds A B A B ...; the best of each."""
    models = {f: build_model(name, **kwargs) for f in FORMATS}
    best = dict.fromkeys(FORMATS, 0.0)
    for round_ in range(1 + PROBE_ROUNDS):
        for f in FORMATS:
            rate = probe_step_rate(models[f], size, batch, f == "channels_last", amp)
            if round_:  # round 0 warms up (oneDNN's kernel generation, the allocator)
                best[f] = max(best[f], rate)
    return best


def _cache_key(name: str, kwargs: dict[str, Any], size: int, batch: int, amp: bool) -> str:
    bf16 = "bf16" if native_bf16(torch.device("cpu")) else "no-bf16"
    args = ",".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
    return (
        f"{cpu_name()} ({bf16}) | torch {torch.__version__} | {torch.get_num_threads()} threads | "
        f"{allocator_name()} | {name}({args}) {size}px b{batch} | {'amp' if amp else 'fp32'}"
    )


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):  # missing or damaged: probe again and rewrite it
        return {}


def choose_memory_format(
    model: str,
    model_kwargs: dict[str, Any],
    image_size: int,
    batch_size: int,
    device: torch.device,
    amp: bool,
    requested: bool | None = None,
) -> FormatChoice:
    """channels_last or NCHW for a run: `requested` when given, channels_last on CUDA, else the faster of
    the two on this CPU (probed once, then read from the cache)."""
    if requested is not None:
        return FormatChoice(bool(requested), "config")
    if device.type != "cpu":
        return FormatChoice(True, device.type)
    batch = min(batch_size, PROBE_BATCH)
    key = _cache_key(model, model_kwargs, image_size, batch, amp)
    path = probe_cache_path()
    cached = _read_cache(path).get(key)
    if isinstance(cached, dict) and set(cached.get("rates", {})) == set(FORMATS):
        return FormatChoice(bool(cached["channels_last"]), "cache", dict(cached["rates"]))
    with torch.random.fork_rng(devices=[]):  # the run's own random numbers are left as they were
        rates = _probe(model, model_kwargs, image_size, batch, amp)
    channels_last = rates["nchw"] <= MARGIN * rates["channels_last"]
    entry = {
        "channels_last": channels_last,
        "rates": rates,
        "date": datetime.now().isoformat(timespec="seconds"),
    }
    try:
        atomic_write_text(path, json.dumps({**_read_cache(path), key: entry}, indent=1) + "\n")
    except OSError as e:  # a read-only home: the choice still holds for this run
        print(f"seglib: could not cache the memory-format probe in {path} ({e}); set SEGLIB_PROBE_CACHE")
    return FormatChoice(channels_last, "probe", rates)

"""The fastest memory format for this machine, model and size: a short probe, cached per CPU model.

channels_last (NHWC) is what GPUs and most CPUs train fastest in, but not all: on a CPU without native
bf16 such as AMD Zen 3, oneDNN's backward-weights pass in NHWC runs at a fraction of its NCHW speed
(docs/performance.md, "memory format"), so the whole UNet step is slower than NCHW. `channels_last=None`
(TrainConfig's default) therefore measures both on the run's own model and image size: a few training
steps each, interleaved, on random data, with every random generator put back afterwards. The answer is
cached per CPU model, torch version, threads, allocator, model, size, batch and precision in
`$SEGLIB_PROBE_CACHE` (default ~/.cache/seglib/fastpath.json); CUDA keeps channels_last unprobed.
A probe taken while other programs used this process's CPUs decides its run only and is not cached.
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

from ..allocator import allocator_name
from ..models import build_model
from .io import atomic_write_text
from .losses import bce_loss
from .optimizer import build_optimizer
from .runtime import autocast, cpu_name, native_bf16

__all__ = [
    "FormatChoice",
    "busy_cores_limit",
    "choose_memory_format",
    "probe_cache_path",
    "probe_step_rate",
    "FORMATS",
]

FORMATS = ("channels_last", "nchw")
# A probe's rates differ by a few per cent from run to run; NCHW must win by more to replace today's
# default, so that a machine where channels_last is as good keeps it.
MARGIN = 1.05
# The probe trains at the run's own batch, up to this. At batch 2 a step is short and the two formats'
# rates moved between processes by more than their difference, so one probe picked the slower format
# for a whole run
# (benchmarks/probe_batch.py; docs/performance.md, "The probe at the run's batch").
PROBE_BATCH = 8
PROBE_ROUNDS = 3  # timed rounds after the warm-up, formats interleaved; the best of each counts
# Other programs' use of this process's CPUs during a probe, in cores, above which its reading is not
# cached. A busy program beside the probe slows both formats several-fold and can turn their order; a
# cached reading taken so kept runs in the slower format on every later run (docs/performance.md, "A
# probe on a busy machine", which also gives the idle reading). SEGLIB_PROBE_BUSY_CORES moves it
# (`inf`: cache every probe, e.g. in a container whose host's other tenants always show).
BUSY_CORES = 0.25


def busy_cores_limit() -> float:
    """The cores other programs may use during a probe whose answer is then cached."""
    value = os.environ.get("SEGLIB_PROBE_BUSY_CORES", str(BUSY_CORES))
    try:
        limit = float(value)
    except ValueError:
        limit = -1.0
    if not limit >= 0:  # also NaN
        raise ValueError(
            f"SEGLIB_PROBE_BUSY_CORES={value!r}: give the CPU cores other programs may use during the "
            f"memory-format probe as a number >= 0 (default {BUSY_CORES}; inf caches every probe)"
        )
    return limit


@dataclass(frozen=True)
class FormatChoice:
    """What a run trains in, and why: "config" (asked for), "cuda" (default there), "probe" or "cache"."""

    channels_last: bool
    source: str
    rates: dict[str, float] = field(default_factory=dict)  # images/s per format, when probed
    others: float | None = None  # cores other programs used during this probe (None: not probed, unknown)

    def describe(self) -> str:
        name = "channels_last" if self.channels_last else "NCHW"
        if not self.rates:
            return f"memory format {name} ({self.source})"
        rates = ", ".join(f"{k} {v:.3g}" for k, v in self.rates.items())
        return f"memory format {name} ({self.source}: {rates} images/s)"


def probe_cache_path() -> Path:
    """The file the probes' results are kept in: `SEGLIB_PROBE_CACHE`, else seglib/fastpath.json in the
    user's cache folder (`XDG_CACHE_HOME`, else ~/.cache)."""
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


def _cpus_busy_seconds() -> float | None:
    """CPU seconds all programs have used on this process's CPUs since boot (Linux's /proc/stat; None
    elsewhere). Steal time counts: on a shared virtual machine it is the neighbours' use of the cores."""
    try:
        mine = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        lines = Path("/proc/stat").read_text().splitlines()
    except (AttributeError, OSError):  # no affinity call (macOS) or no /proc
        return None
    rows = [line.split() for line in lines]
    # per CPU: user nice system idle iowait irq softirq steal ...; busy is all of the first 8 but idle, iowait
    ticks = [list(map(int, r[1:9])) for r in rows if r and r[0] in mine]
    if not ticks:
        return None
    return sum(sum(t) - t[3] - t[4] for t in ticks) / os.sysconf("SC_CLK_TCK")


def _others_cores(before: float | None, after: float | None, own: float, wall: float) -> float | None:
    """Cores other programs used during `wall` seconds: the CPUs' busy seconds (`before`, `after`) less
    this process's `own` CPU seconds. /proc/stat counts in clock ticks: two are taken off, so that a
    short probe on an idle machine reads 0."""
    if before is None or after is None or wall <= 0:
        return None
    tick = 1 / os.sysconf("SC_CLK_TCK")
    return max(0.0, after - before - own - 2 * tick) / wall


def _timed_probe(
    name: str, kwargs: dict[str, Any], size: int, batch: int, amp: bool
) -> tuple[dict[str, float], float | None]:
    """`_probe`'s rates and the cores other programs used meanwhile (None where that is unknown)."""
    before, own, t = _cpus_busy_seconds(), time.process_time(), time.perf_counter()
    rates = _probe(name, kwargs, size, batch, amp)
    own, wall = time.process_time() - own, time.perf_counter() - t
    return rates, _others_cores(before, _cpus_busy_seconds(), own, wall)


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


# Answers of probes taken on a busy machine, not cached on disk, kept for this process: each run probing
# again beside other programs could pick another format, and a study's runs (notebook 05's schedulers) would
# then differ in their rounding as well as in what they compare.
_THIS_PROCESS: dict[str, FormatChoice] = {}


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
    busy_limit = busy_cores_limit()  # a bad setting is named before the probe takes its seconds
    batch = min(batch_size, PROBE_BATCH)
    key = _cache_key(model, model_kwargs, image_size, batch, amp)
    path = probe_cache_path()
    cached = _read_cache(path).get(key)
    # an entry without "others" predates the busy check (it may have been read on a busy machine)
    if isinstance(cached, dict) and set(cached.get("rates", {})) == set(FORMATS) and "others" in cached:
        return FormatChoice(bool(cached["channels_last"]), "cache", dict(cached["rates"]), cached["others"])
    if key in _THIS_PROCESS:  # a busy probe's answer: the runs of a study in one kernel train alike
        return _THIS_PROCESS[key]
    with torch.random.fork_rng(devices=[]):  # the run's own random numbers are left as they were
        rates, others = _timed_probe(model, model_kwargs, image_size, batch, amp)
    channels_last = rates["nchw"] <= MARGIN * rates["channels_last"]
    if others is not None and others > busy_limit:
        print(
            f"seglib: other programs used {others:.2f} CPU cores during the memory-format probe; its "
            "answer holds for this process's runs of this model and size and is not cached (another process "
            "probes again)"
        )
        _THIS_PROCESS[key] = FormatChoice(channels_last, "this process's probe", rates, others)
        return FormatChoice(channels_last, "probe", rates, others)
    entry = {
        "channels_last": channels_last,
        "rates": rates,
        "others": others,
        "date": datetime.now().isoformat(timespec="seconds"),
    }
    try:
        atomic_write_text(path, json.dumps({**_read_cache(path), key: entry}, indent=1) + "\n")
    except OSError as e:  # a read-only home: the choice still holds for this run
        print(f"seglib: could not cache the memory-format probe in {path} ({e}); set SEGLIB_PROBE_CACHE")
    return FormatChoice(channels_last, "probe", rates, others)

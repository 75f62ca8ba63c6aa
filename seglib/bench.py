"""`python -m seglib.bench`: the original's way of training (reference) against seglib's fast path.

Each figure is the median of the timed repetitions after a warm-up, with min and max; the two sides use
the same model, images and batch size, and take turns (A B A B ...), so a drift of clock or temperature
falls on both alike.

- reference: fp32, NCHW, PIL decode + Albumentations of the full-size JPEG for every sample of every
  epoch, DataLoader with 2 workers (re-created each epoch), `.item()` on loss and Dice every batch, in
  a plain glibc process.
- seglib: the memory format `choose_memory_format` picks for the machine (channels_last on CUDA; on a
  CPU the faster of channels_last and NCHW, probed once and cached), jemalloc where it is installed,
  decode-once cache (pre-resized uint8 memmaps), fit's DataLoader recipe (`seglib.engine.loaders`: no
  workers on a CPU), loss and Dice summed on the device and read once; bf16 autocast on CUDA and on a
  CPU with native bf16 (AVX512-BF16 or AMX), fp32 elsewhere.

The training-step rows on a CPU run each side in a worker process of its own (`seglib.stepbench`): an
allocator can only be chosen when a process starts, so one process cannot hold both sides honestly.
The workers import together, then build, probe and warm up one at a time, then take turns, one round
each (reference, seglib, seglib under glibc, reference, ...), each with the machine to itself. seglib's
worker times both memory formats and reports the one it picked, as fit() would, under its own
allocator; every (format, allocator) gets a "candidate" row against the reference, so the table
separates the allocator's share from the memory format's. On CUDA the step rows, and everywhere the
data, epoch and evaluation rows, run in this one process, under its allocator (glibc unless it was
started with jemalloc preloaded).

Its figures for the machines tried are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.flop_counter import FlopCounterMode

from .data import (
    DeviceAugment,
    EpochSampler,
    OxfordPetDataset,
    collate,
    eval_transform,
    make_synthetic_pets,
    synthetic_pet,
    train_transform,
    uint8_transform,
)
from .engine import evaluate
from .engine.allocator import allocator_env, allocator_name
from .engine.batches import BatchPrep, ResidentLoader, resident_fits
from .engine.fastpath import FORMATS, choose_memory_format
from .engine.loaders import make_loader, train_loader
from .engine.losses import bce_loss
from .engine.optimizer import build_optimizer
from .engine.runtime import amp_dtype, cpu_name, default_amp, native_bf16, resolve_device
from .metrics import confusion_counts, dice_from_counts
from .models import build_model
from .roofline import memory_bandwidth, roofline_images_per_s, step_traffic
from .stepbench import PeakRSS, choice_dict, fast_step, reference_step, run_rounds, step_workers

__all__ = ["PeakRSS", "run_benchmark", "main"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    a: Callable[[], float], b: Callable[[], float], reps: int, warmup: int = 1
) -> tuple[list, list]:
    """Run a and b alternately: `warmup` untimed rounds, then `reps` rounds. Each returns its own measure."""
    for _ in range(warmup):
        a(), b()
    ra, rb = [], []
    for _ in range(reps):
        ra.append(a())
        rb.append(b())
    return ra, rb


def _row(what: str, unit: str, ref: list[float], fast: list[float], higher_is_better: bool = True) -> dict:
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


def matmul_ceiling(device: torch.device, n: int, reps: int, dtype: torch.dtype = torch.float32) -> float:
    """Matmul GFLOP/s in `dtype`: the best of `reps` timings of 3 back-to-back products (a ceiling)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    times = []
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        for _ in range(3):
            a @ b
        _sync(device)
        times.append((time.perf_counter() - t) / 3)
    return 2 * n**3 / min(times) / 1e9


def train_step_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one forward + backward, counted by torch.utils.flop_counter."""
    with FlopCounterMode(display=False) as counter:
        bce_loss(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def bench_train_step(
    name: str,
    kwargs: dict,
    size: int,
    batch: int,
    steps: int,
    reps: int,
    device: torch.device,
    compile_too: bool = False,
    roofline: tuple[float, float] | None = None,
):
    """Training step alone: reference (fp32 NCHW, .item() every batch) against seglib's fast path.
    `roofline` (seglib's GFLOP/s ceiling, GB/s bandwidth) adds its roofline bound and seglib's share."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=device)
    y = (torch.rand(batch, 1, size, size, device=device) > 0.5).float()
    ref_model, ref_opt = _model_and_optimizer(name, kwargs, device, torch.contiguous_format, seglib=False)
    fast_model, fast_opt = _model_and_optimizer(name, kwargs, device, torch.channels_last, seglib=True)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    amp = default_amp(device)
    flops = train_step_flops(build_model(name, **kwargs).to(device), x[:1], y[:1]) * batch
    peaks: dict[str, float] = {}

    def reference() -> float:
        def run() -> None:
            for _ in range(steps):
                reference_step(ref_model, ref_opt, x, y)

        return batch * steps / _timed(run, device, peaks, "reference")

    def fast(model: torch.nn.Module = fast_model) -> float:
        def run() -> None:
            total = torch.zeros((), device=device)
            for _ in range(steps):
                total += fast_step(model, fast_opt, x_cl, y, amp)
            total.item()  # one host sync for all the steps

        return batch * steps / _timed(run, device, peaks, "seglib")

    ref, fst = interleaved(reference, fast, reps)
    tuned, compiled, compile_seconds = None, None, None
    if device.type == "cuda":
        tuned, compiled, compile_seconds = _cuda_variants(
            fast, fast_model, fast_opt, (x_cl, y), amp, reps, compile_too
        )
    what = _step_what(name, kwargs, size, batch)
    rows = [_row(what, "images/s", ref, fst), _achieved_row(what, ref, fst, flops / batch)]
    rows += _cuda_variant_rows(what, ref, tuned, compiled, compile_seconds)
    if roofline is not None:
        bound = roofline_images_per_s(step_traffic(fast_model, x_cl, y, amp), batch, *roofline)
        rows += _roofline_rows(what, bound, fst, compiled)
    mem_unit = "MB max allocated" if device.type == "cuda" else "MB peak RSS"
    rows.append(_memory_row(what, mem_unit, peaks["reference"], peaks["seglib"]))
    return rows


def _model_and_optimizer(
    name: str, kwargs: dict, device: torch.device, fmt: torch.memory_format, seglib: bool
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The model in `fmt` and its AdamW: seglib's (`fit`'s, fused where it can be) or the original's."""
    model = build_model(name, **kwargs).to(device).to(memory_format=fmt)
    if seglib:
        return model, build_optimizer(model.parameters(), 1e-4, 1e-4)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4)


def _cuda_variant_rows(
    what: str,
    ref: list[float],
    tuned: list[float] | None,
    compiled: list[float] | None,
    compile_s: float | None,
) -> list[dict]:
    """The cudnn.benchmark and torch.compile steps against the reference, where they ran (CUDA)."""
    rows = []
    if tuned:
        rows.append(_row(f"{what} cudnn.benchmark", "images/s", ref, tuned))
    if compiled:
        rows.append(_row(f"{what} torch.compile", "images/s", ref, compiled))
        rows.append(_info_row(f"{what} torch.compile: first step (compiling)", "s", compile_s))
    return rows


def _timed(run: Callable[[], None], device: torch.device, peaks: dict[str, float], key: str) -> float:
    """Seconds `run` takes; the highest memory it reached (`PeakRSS`) is kept in `peaks[key]`."""
    with PeakRSS(device) as mem:
        _sync(device)
        t = time.perf_counter()
        run()
        dt = time.perf_counter() - t
    peaks[key] = max(peaks.get(key, 0), mem.peak)
    return dt


def _cuda_variants(
    fast: Callable[..., float],
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor],
    amp: bool,
    reps: int,
    compile_too: bool,
) -> tuple[list[float], list[float] | None, float | None]:
    """On CUDA, seglib's step (`fast(model)`: images/s) again with cuDNN autotuning, and with `compile_too`
    under torch.compile: (tuned rates, compiled rates or None, the first compiled step's seconds or None)."""
    x, y = batch
    torch.backends.cudnn.benchmark = True  # as fit(deterministic=False): cuDNN's fastest kernels per shape
    fast()  # the autotuning itself is not timed
    tuned = [fast() for _ in range(reps)]
    torch.backends.cudnn.benchmark = False
    if not compile_too:  # torch.compile: is it worth its compile time?
        return tuned, None, None
    compiled_model = torch.compile(model)  # shares the parameters, so `opt` still steps them
    _sync(x.device)
    t0 = time.perf_counter()
    try:
        fast_step(compiled_model, opt, x, y, amp).item()
        seconds = time.perf_counter() - t0
        return tuned, [fast(compiled_model) for _ in range(reps)], seconds
    except Exception as e:  # a machine without a working compiler toolchain: report, go on
        print(f"torch.compile failed ({type(e).__name__}: {str(e)[:200]}); no compiled row")
        return tuned, None, None


def _roofline_rows(what: str, bound: float, eager: list[float], compiled: list[float] | None) -> list[dict]:
    """The step's roofline bound (images/s) and the share of it seglib's step reaches, eager and compiled."""
    rows = [{"what": f"{what} roofline bound", "unit": "images/s", "reference": None, "seglib": bound}]
    for how, rates in (("", eager), (" torch.compile", compiled)):
        if rates:
            share = statistics.median(rates) / bound
            rows.append({"what": f"{what}{how} share of roofline bound", "unit": "fraction", "seglib": share})
    return [{"reference": None, "ratio": None, **r} for r in rows]


def _step_what(name: str, kwargs: dict, size: int, batch: int) -> str:
    """A step row's name, e.g. "train step unet-w16 128px b4"."""
    return f"train step {name}{'-w' + str(kwargs['base_channels']) if kwargs else ''} {size}px b{batch}"


def _achieved_row(what: str, ref: list[float], fast: list[float], flops_per_image: float) -> dict:
    """GFLOP/s achieved by each side, from its images/s and the FLOPs of one image's step."""
    gflop = flops_per_image / 1e9
    return _row(f"{what} achieved", "GFLOP/s", [r * gflop for r in ref], [f * gflop for f in fast])


def _memory_row(what: str, unit: str, ref: float, fast: float) -> dict:
    """Peak memory of each side; the ratio reads as "times less than the reference"."""
    return {
        "what": f"{what} memory",
        "unit": unit,
        "reference": ref,
        "seglib": fast,
        "ratio": ref / fast if fast else None,
    }


def _glibc_env() -> dict[str, str]:
    """This process's environment without a preloaded allocator: the plain glibc process the original ran in."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    return {**env, "SEGLIB_JEMALLOC": "0"}


def _step_configs(spec: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
    """The workers of one step row, (spec, env) by label: the reference (glibc, NCHW); seglib (its
    allocator, both formats, choosing one as fit() would); seglib-glibc when seglib's allocator is jemalloc."""
    seglib_env = {**os.environ, **allocator_env()}
    configs = {
        "reference": ({**spec, "mode": "reference", "formats": ["nchw"]}, _glibc_env()),
        "seglib": ({**spec, "mode": "seglib", "formats": list(FORMATS), "choose": True}, seglib_env),
    }
    if "jemalloc" in seglib_env.get("LD_PRELOAD", ""):
        configs["seglib-glibc"] = ({**spec, "mode": "seglib", "formats": list(FORMATS)}, _glibc_env())
    return configs


def cpu_train_step(
    name: str, kwargs: dict, size: int, batch: int, steps: int, reps: int
) -> tuple[list[dict], dict[str, Any]]:
    """Training step on a CPU, each side in a worker process of its own, taking turns `reps` times
    (module docstring). The rows, and seglib's choice of memory format (`stepbench.choice_dict`)."""
    cpu = torch.device("cpu")
    flops = _step_flops(name, kwargs, size, cpu)
    spec = {"model": name, "model_kwargs": kwargs, "size": size, "batch": batch, "steps": steps}
    with step_workers(_step_configs(spec)) as workers:
        answers = run_rounds(workers, reps)
        ready = {label: w.ready for label, w in workers.items()}
    choice = ready["seglib"]["choice"]
    return _cpu_step_rows(_step_what(name, kwargs, size, batch), flops, ready, answers), choice


def _step_flops(name: str, kwargs: dict, size: int, device: torch.device) -> int:
    """FLOPs of one image's training step (forward + backward)."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, size, size, device=device)
    y = (torch.rand(1, 1, size, size, device=device) > 0.5).float()
    return train_step_flops(build_model(name, **kwargs).to(device), x, y)


def _cpu_step_rows(
    what: str, flops: int, ready: dict[str, dict], answers: dict[str, list[dict]]
) -> list[dict]:
    """The step rows from the workers' answers: reference against seglib's chosen format, achieved
    GFLOP/s, one candidate row per (format, allocator) against the reference, and peak RSS."""
    chosen = ready["seglib"]["choice"]["format"]

    def rates(label: str, fmt: str) -> list[float]:
        return [a["rates"][fmt] for a in answers[label]]

    def peak(label: str, fmt: str) -> float:
        return max(a["peak_mb"][fmt] for a in answers[label])

    ref, fast = rates("reference", "nchw"), rates("seglib", chosen)
    rows = [_row(what, "images/s", ref, fast), _achieved_row(what, ref, fast, flops)]
    for label in ("seglib", "seglib-glibc"):
        for fmt in ready[label]["formats"] if label in ready else ():
            candidate = f"{what} candidate {fmt} + {ready[label]['allocator']}"
            rows.append(_row(candidate, "images/s", ref, rates(label, fmt)))
    rows.append(_memory_row(what, "MB peak RSS", peak("reference", "nchw"), peak("seglib", chosen)))
    return rows


def _train_step_rows(
    steps: list[tuple[str, dict, int, int]],
    reps: int,
    dev: torch.device,
    compile_models: bool,
    fast_ceiling: float,
    choices: dict[str, Any],
    log: Callable[[str], Any],
    bandwidth: float = 0.0,
) -> list[dict]:
    """The training-step rows of every (model, kwargs, size, batch): on a CPU in worker processes
    (`cpu_train_step`; seglib's choice of format goes into `choices`), elsewhere in this one, with the
    roofline bound of `fast_ceiling` GFLOP/s and `bandwidth` GB/s."""
    rows: list[dict] = []
    for name, kw, size, batch in steps:
        if dev.type == "cpu":
            new, choice = cpu_train_step(name, kw, size, batch, steps=1, reps=reps)
            choices[new[0]["what"]] = choice
        else:
            new = bench_train_step(
                name, kw, size, batch, 10, reps, dev, compile_models, (fast_ceiling, bandwidth)
            )
            choice = None
        rows += new
        log(
            _fmt(new[0])
            + f" | achieved {new[1]['seglib']:.0f} GFLOP/s = {new[1]['seglib'] / fast_ceiling:.0%} of its ceiling"
        )
        if choice:
            log(f"  seglib's {choice['describe']}, chosen under {choice['allocator']} malloc")
    return rows


def make_oxford_sized(root: Path, n: int, seed: int = 0) -> Path:
    """A data set of `n` JPEGs with the real set's spread of sizes (widths 150-1600 px), official layout."""
    root = make_synthetic_pets(root, n_trainval=n, n_test=max(2, n // 4), seed=seed)
    rng = np.random.default_rng(seed)
    for jpg in sorted((root / "images").glob("*.jpg")):
        w = int(np.clip(rng.lognormal(np.log(480), 0.45), 150, 1600))
        h = int(np.clip(w * rng.uniform(0.6, 1.4), 120, 1600))
        image, trimap = synthetic_pet(rng, h, w)
        Image.fromarray(image).save(jpg, quality=90)
        Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{jpg.stem}.png")
    return root


def _loader_rate(loader_factory: Callable[[], DataLoader]) -> Callable[[], float]:
    def run() -> float:
        loader = loader_factory()
        t = time.perf_counter()
        n = sum(b["image"].shape[0] for b in loader)
        return n / (time.perf_counter() - t)

    return run


def _epoch_format(
    kwargs: dict, size: int, batch: int, dev: torch.device, what: str, choices: dict, log: Callable
) -> torch.memory_format:
    """The memory format of the epoch's seglib model, chosen as fit() would in this process (its
    allocator); the choice goes into `choices[what]`."""
    choice = choose_memory_format("unet", kwargs, size, batch, dev, default_amp(dev))
    choices[what] = choice_dict(choice)
    log(f"{what}: seglib's {choice.describe()}, chosen under {allocator_name()} malloc")
    return torch.channels_last if choice.channels_last else torch.contiguous_format


def run_benchmark(
    quick: bool = False,
    device: str = "auto",
    reps: int | None = None,
    log=print,
    compile_models: bool = False,
) -> dict[str, Any]:
    """Run every measurement; returns {"rows": [...], machine facts}."""
    dev = resolve_device(device)
    reps = reps or (3 if quick else 5)
    out = _machine_facts(dev, quick)
    rows, choices = out["rows"], out["choices"]
    fast_ceiling = _ceiling_rows(rows, dev, 2048 if quick else 4096, reps, log)
    bandwidth = _bandwidth_rows(rows, dev, reps, log) if dev.type == "cuda" else 0.0
    rows += _train_step_rows(
        _step_specs(dev, quick), reps, dev, compile_models, fast_ceiling, choices, log, bandwidth
    )
    with tempfile.TemporaryDirectory(prefix="seglib-bench-") as tmp:
        # The test split is a quarter of the set; a GPU gets more images, so worker start-up does not dominate.
        root = make_oxford_sized(Path(tmp) / "pets", 24 if quick else 384 if dev.type == "cuda" else 96)
        cache = Path(tmp) / "cache"
        rows += _data_path_rows(root, cache, dev, reps, log)
        rows += _epoch_rows(root, cache, dev, reps, choices, log)
        rows += _eval_rows(root, cache, dev, reps, log)
    return out


def _machine_facts(dev: torch.device, quick: bool) -> dict[str, Any]:
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
        "rows": [],
        "choices": {},  # the memory format seglib trained in, per step row and for the epoch
    }


def _info_row(what: str, unit: str, seglib: float) -> dict:
    """A row with seglib's figure only (no reference to compare with)."""
    return {"what": what, "unit": unit, "reference": None, "seglib": seglib, "ratio": None}


def _ceiling_rows(rows: list[dict], dev: torch.device, n: int, reps: int, log: Callable) -> float:
    """Adds the matmul ceiling rows; returns the ceiling seglib's steps compare with: bf16's where seglib
    trains in bf16 (the device has it natively), else fp32's."""
    ceiling = matmul_ceiling(dev, n, reps)
    rows.append(
        {**_info_row(f"fp32 matmul {n}x{n} ceiling", "GFLOP/s", ceiling), "reference": ceiling, "ratio": 1.0}
    )
    log(f"fp32 matmul ceiling {ceiling:.0f} GFLOP/s")
    if not (default_amp(dev) and amp_dtype(dev) == torch.bfloat16):
        return ceiling
    fast_ceiling = matmul_ceiling(dev, n, reps, torch.bfloat16)
    rows.append(_info_row(f"bf16 matmul {n}x{n} ceiling", "GFLOP/s", fast_ceiling))
    log(f"bf16 matmul ceiling {fast_ceiling:.0f} GFLOP/s")
    return fast_ceiling


def _bandwidth_rows(rows: list[dict], dev: torch.device, reps: int, log: Callable) -> float:
    """Adds the copy bandwidth row (the roofline's other side: the step rows give their bound and share)."""
    bandwidth = memory_bandwidth(dev, reps)
    rows.append(_info_row("memory bandwidth (copy)", "GB/s", bandwidth))
    log(f"memory bandwidth {bandwidth:.0f} GB/s")
    return bandwidth


def _step_specs(dev: torch.device, quick: bool) -> list[tuple[str, dict, int, int]]:
    """The training steps timed: (model, kwargs, image size, batch)."""
    if dev.type == "cuda":
        return [("unet", {}, 256, 32), ("resnet34_unet", {}, 256, 64)]
    if quick:
        return [("unet", {"base_channels": 16}, 128, 4), ("resnet34_unet", {}, 64, 4)]
    return [
        ("unet", {}, 256, 8),
        ("resnet34_unet", {}, 256, 8),
        ("unet", {"base_channels": 16}, 128, 8),
        ("resnet34_unet", {}, 96, 8),
    ]


def _data_path_rows(root: Path, cache: Path, dev: torch.device, reps: int, log: Callable) -> list[dict]:
    """JPEGs to augmented 256 px batches: the original's loader against fit's (the cache), and the cache's
    build time."""
    size, batch = 256, 8
    ref_ds = OxfordPetDataset(root, "trainval", train_transform(size))
    fast_ds = OxfordPetDataset(root, "trainval", train_transform(size))
    t0 = time.perf_counter()
    fast_ds.use_cache(cache, size)
    build = time.perf_counter() - t0
    ref_rate = _loader_rate(
        lambda: DataLoader(ref_ds, batch_size=batch, shuffle=True, num_workers=2, collate_fn=collate)
    )
    fast_rate = _loader_rate(lambda: train_loader(fast_ds, batch, dev, seed=0))  # fit's training loader
    ref, fst = interleaved(ref_rate, fast_rate, reps)
    rows = [_row(f"data path {len(ref_ds)} JPEGs (150-1600 px) -> {size}px batches", "images/s", ref, fst)]
    rows.append(_info_row("cache build (once per data set and size)", "s", build))
    log(_fmt(rows[0]) + f" (cache built once in {build:.1f} s)")
    return rows


def _epoch_rows(
    root: Path, cache: Path, dev: torch.device, reps: int, choices: dict[str, Any], log: Callable
) -> list[dict]:
    """A whole epoch, data + steps, the original's way against fit's (host and device data paths): the
    quick profile's model and size on a CPU; on a GPU the full UNet at 256 px, batch 32, over the set 4
    times (does the data path keep the GPU busy?)."""
    if dev.type == "cuda":
        size, batch, kwargs, passes = 256, 32, {}, 4
    else:
        size, batch, kwargs, passes = 128, 8, {"base_channels": 16}, 1
    ref_ds = OxfordPetDataset(root, "trainval", train_transform(size))
    fast_ds = OxfordPetDataset(root, "trainval", train_transform(size)).use_cache(cache, size)
    epoch_len = len(ref_ds) * passes
    what = f"whole epoch unet{'-w' + str(kwargs['base_channels']) if kwargs else ''} {size}px b{batch}, "
    what += f"{epoch_len} images"
    fmt = _epoch_format(kwargs, size, batch, dev, what, choices, log)
    ref_model, ref_opt = _model_and_optimizer("unet", kwargs, dev, torch.contiguous_format, seglib=False)
    fast_model, fast_opt = _model_and_optimizer("unet", kwargs, dev, fmt, seglib=True)
    waits: list[float] = []

    def sampler(ds: OxfordPetDataset) -> RandomSampler:
        return RandomSampler(ds, num_samples=epoch_len)  # several shuffled passes, no repeats within one

    def ref_epoch() -> float:
        loader = DataLoader(
            ref_ds, batch_size=batch, sampler=sampler(ref_ds), num_workers=2, collate_fn=collate
        )
        return _reference_epoch(loader, ref_model, ref_opt, dev)

    # Built once with persistent workers, as fit() does: worker start-up is not part of an epoch.
    fast_loader = make_loader(fast_ds, batch, sampler(fast_ds), dev)

    def to_input(b: dict, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = b["image"].to(dev, non_blocking=True).contiguous(memory_format=fmt)
        return x, b["mask"].to(dev, non_blocking=True)

    def fast_epoch() -> float:
        return _timed_epoch(fast_loader, to_input, fast_model, fast_opt, default_amp(dev), waits)

    ref, fst = interleaved(ref_epoch, fast_epoch, reps)
    rows = [_row(what, "images/s", ref, fst)]
    rows.append(
        _info_row("seglib epoch: share of time waiting for data", "fraction", statistics.median(waits))
    )
    log(_fmt(rows[0]) + f" (loader wait {statistics.median(waits):.1%})")
    epoch = (root, cache, size, batch, kwargs, passes, fmt)
    return rows + _device_epoch_rows(epoch, dev, reps, ref_epoch, what, log)


def _reference_epoch(
    loader: DataLoader, model: torch.nn.Module, opt: torch.optim.Optimizer, dev: torch.device
) -> float:
    """Images/s of one pass over `loader` the original's way (`reference_step`, a host sync every batch)."""
    t, n = time.perf_counter(), 0
    for b in loader:
        x, y = b["image"].to(dev), b["mask"].to(dev)
        reference_step(model, opt, x, y)
        n += x.shape[0]
    return n / (time.perf_counter() - t)


def _eval_rows(root: Path, cache: Path, dev: torch.device, reps: int, log: Callable) -> list[dict]:
    """Evaluation at original resolution (256 px model input, scored against the full-size trimaps): the
    original's per-image loop against `evaluate`, reading JPEGs and then a cached test set."""
    test = OxfordPetDataset(root, "test", eval_transform(256), return_full_mask=True)
    model = build_model("resnet34_unet").to(dev).eval()
    model_cl = build_model("resnet34_unet").to(dev).to(memory_format=torch.channels_last).eval()

    @torch.no_grad()
    def ref_eval() -> float:
        t = time.perf_counter()
        for b in DataLoader(test, batch_size=8, num_workers=2, collate_fn=collate):
            logits = model(b["image"].to(dev))
            for j, full in enumerate(b["mask_full"]):
                up = torch.nn.functional.interpolate(logits[j : j + 1], size=full.shape, mode="bilinear")
                dice_from_counts(*confusion_counts(up[:, 0], full[None].to(dev))).item()
        return len(test) / (time.perf_counter() - t)

    def timed_eval(ds: OxfordPetDataset) -> Callable[[], float]:
        def run() -> float:
            t = time.perf_counter()
            evaluate(model_cl, ds, device=str(dev), batch_size=8, progress=False)
            return len(ds) / (time.perf_counter() - t)

        return run

    # The same with the test set decoded once (dataset.use_cache): pre-resized images, no JPEG decode.
    cached = OxfordPetDataset(root, "test", eval_transform(256)).use_cache(cache, 256)
    what = f"evaluation resnet34_unet 256px, original-resolution scoring, {len(test)} images"
    rows = []
    for label, ds in ((what, test), (f"{what}, test set cached", cached)):
        rows.append(_row(label, "images/s", *interleaved(ref_eval, timed_eval(ds), reps)))
        log(_fmt(rows[-1]))
    return rows


def _timed_epoch(
    batches: Iterable[dict],
    to_input: Callable[[dict, int], tuple[torch.Tensor, torch.Tensor]],
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    amp: bool,
    waits: list[float],
) -> float:
    """images/s of seglib's steps over `batches` (`to_input(batch, step)` makes the model's input); the
    share of the time spent waiting for the next batch goes into `waits`."""
    t, n, wait, step, total = time.perf_counter(), 0, 0.0, 0, 0.0
    it = iter(batches)
    while True:
        w0 = time.perf_counter()
        b = next(it, None)
        wait += time.perf_counter() - w0
        if b is None:
            break
        x, y = to_input(b, step)
        total = total + fast_step(model, opt, x, y, amp)  # summed on the device, read once
        n, step = n + x.shape[0], step + 1
    float(total)
    dt = time.perf_counter() - t
    waits.append(wait / dt)
    return n / dt


def _device_epoch_rows(
    epoch: tuple, dev: torch.device, reps: int, ref_epoch: Callable[[], float], what: str, log: Callable
) -> list[dict]:
    """The whole-epoch row on the device data path (`TrainConfig.device_data`): uint8 batches from the
    cache (held whole on the device where it fits), normalised and augmented there, against the same
    reference epoch; and its share of time waiting for data."""
    root, cache_dir, size, batch, kwargs, passes, fmt = epoch
    ds = OxfordPetDataset(root, "trainval", uint8_transform(size)).use_cache(cache_dir, size)
    sampler = EpochSampler(len(ds), seed=0)
    resident = resident_fits(dev, ds)
    loader = ResidentLoader(ds, batch, sampler, dev) if resident else make_loader(ds, batch, sampler, dev)
    model, opt = _model_and_optimizer("unet", kwargs, dev, fmt, seglib=True)
    prep = BatchPrep(dev, fmt == torch.channels_last, DeviceAugment(), seed=0)
    amp, waits = default_amp(dev), []

    def all_passes() -> Iterator[dict]:
        for p in range(passes):
            sampler.set_epoch(p)
            yield from loader

    def device_epoch() -> float:
        return _timed_epoch(all_passes(), prep, model, opt, amp, waits)

    ref, fst = interleaved(ref_epoch, device_epoch, reps)
    how = "cache resident" if resident else "loader"
    rows = [_row(f"{what}, device data path ({how})", "images/s", ref, fst)]
    rows.append(
        _info_row(
            "seglib epoch, device data path: share of time waiting for data",
            "fraction",
            statistics.median(waits),
        )
    )
    log(_fmt(rows[0]) + f" (loader wait {statistics.median(waits):.1%})")
    return rows


def _fmt(row: dict) -> str:
    ratio = f"{row['ratio']:.2f}x" if row.get("ratio") else "-"
    return (
        f"{row['what']}: reference {row['reference']:.2f}, seglib {row['seglib']:.2f} {row['unit']} ({ratio})"
    )


def markdown_table(result: dict[str, Any]) -> str:
    """The rows as a Markdown table (medians; min-max in brackets)."""
    lines = ["| what | unit | reference | seglib | seglib / reference |", "|---|---|---|---|---|"]
    for r in result["rows"]:

        def cell(key: str, r: dict = r) -> str:
            v = r.get(key)
            if v is None:
                return "-"
            lo, hi = r.get(f"{key}_min"), r.get(f"{key}_max")
            return f"{v:.3g}" + (f" ({lo:.3g}-{hi:.3g})" if lo is not None else "")

        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") else "-"
        lines.append(f"| {r['what']} | {r['unit']} | {cell('reference')} | {cell('seglib')} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m seglib.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick", action="store_true", help="small sizes, 3 repetitions: a smoke run (docs/performance.md)"
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--reps", type=int, help="timed repetitions (default 5, quick 3)")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--compile", action="store_true", help="on CUDA, also time the step under torch.compile")
    a = p.parse_args(argv)
    result = run_benchmark(a.quick, a.device, a.reps, compile_models=a.compile)
    print("\n" + markdown_table(result))
    print(
        f"\n{result['device_name']}, {result['cpu_count']} cores, torch {result['torch']}, {result['threads']} threads"
    )
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

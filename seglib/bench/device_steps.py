"""The training-step rows measured in this process (on CUDA): reference against seglib, cuDNN autotuning,
torch.compile, and the share of the roofline bound."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from ..engine.runtime import default_amp
from ..models import build_model
from .roofline import roofline_images_per_s, step_traffic
from .steps import achieved_row, fast_step, model_and_optimizer, reference_step, step_what, train_step_flops
from .timing import info_row, interleaved, memory_row, row, sync, timed


def bench_train_step(
    name: str,
    kwargs: dict[str, Any],
    size: int,
    batch: int,
    steps: int,
    reps: int,
    device: torch.device,
    compile_too: bool = False,
    roofline: tuple[float, float] | None = None,
) -> list[dict[str, Any]]:
    """Training step alone: reference (fp32 NCHW, .item() every batch) against seglib's fast path.
    `roofline` (seglib's GFLOP/s ceiling, GB/s bandwidth) adds its roofline bound and seglib's share."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=device)
    y = (torch.rand(batch, 1, size, size, device=device) > 0.5).float()
    ref_model, ref_opt = model_and_optimizer(name, kwargs, device, torch.contiguous_format, seglib=False)
    fast_model, fast_opt = model_and_optimizer(name, kwargs, device, torch.channels_last, seglib=True)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    amp = default_amp(device)
    flops = train_step_flops(build_model(name, **kwargs).to(device), x[:1], y[:1]) * batch
    peaks: dict[str, float] = {}

    def reference() -> float:
        def run() -> None:
            for _ in range(steps):
                reference_step(ref_model, ref_opt, x, y)

        return batch * steps / timed(run, device, peaks, "reference")

    def fast(model: torch.nn.Module = fast_model) -> float:
        def run() -> None:
            total = torch.zeros((), device=device)
            for _ in range(steps):
                total += fast_step(model, fast_opt, x_cl, y, amp)
            total.item()  # one host sync for all the steps

        return batch * steps / timed(run, device, peaks, "seglib")

    ref, fst = interleaved(reference, fast, reps)
    eager_peaks = dict(peaks)  # the memory row is the eager steps': CUDA graphs keep a pool of their own
    tuned: list[float] | None = None
    compiled: Compiled = {}
    if device.type == "cuda":
        tuned, compiled = _cuda_variants(fast, fast_model, fast_opt, (x_cl, y), amp, reps, compile_too)
    what = step_what(name, kwargs, size, batch)
    rows = [row(what, "images/s", ref, fst), achieved_row(what, ref, fst, flops / batch)]
    rows += _cuda_variant_rows(what, ref, tuned, compiled)
    if roofline is not None:
        bound = roofline_images_per_s(step_traffic(fast_model, x_cl, y, amp), batch, *roofline)
        rows += _roofline_rows(what, bound, fst, compiled)
    mem_unit = "MB max allocated" if device.type == "cuda" else "MB peak RSS"
    rows.append(memory_row(what, mem_unit, eager_peaks["reference"], eager_peaks["seglib"]))
    return rows


# torch.compile's modes timed on CUDA, with the label their rows carry: the default (kernels fused), and
# CUDA graphs on top (the profile of the ResNet34-UNet's compiled step leaves the GPU idle between launches).
COMPILE_MODES = {"default": "torch.compile", "reduce-overhead": "torch.compile reduce-overhead"}

Compiled = dict[str, tuple[list[float], float]]  # label -> (rates, first step's seconds)


def _cuda_variant_rows(
    what: str, ref: list[float], tuned: list[float] | None, compiled: Compiled
) -> list[dict[str, Any]]:
    """The cudnn.benchmark and torch.compile steps against the reference, where they ran (CUDA)."""
    rows = []
    if tuned:
        rows.append(row(f"{what} cudnn.benchmark", "images/s", ref, tuned))
    for label, (rates, seconds) in compiled.items():
        rows.append(row(f"{what} {label}", "images/s", ref, rates))
        rows.append(info_row(f"{what} {label}: first step (compiling)", "s", seconds))
    return rows


class _GraphSteps(torch.nn.Module):
    """A compiled model under CUDA graphs that tells torch each call starts a new step, so that a replay
    may overwrite the last step's outputs (the step reads its loss before the next one starts)."""

    def __init__(self, compiled: torch.nn.Module) -> None:
        super().__init__()
        self.compiled = compiled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(x)


def _cuda_variants(
    fast: Callable[..., float],
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor],
    amp: bool,
    reps: int,
    compile_too: bool,
) -> tuple[list[float], Compiled]:
    """On CUDA, seglib's step (`fast(model)`: images/s) again with cuDNN autotuning, and with `compile_too`
    under each of `COMPILE_MODES`: (tuned rates, {label: (rates, the first compiled step's seconds)})."""
    x, y = batch
    torch.backends.cudnn.benchmark = True  # as fit(deterministic=False): cuDNN's fastest kernels per shape
    fast()  # the autotuning itself is not timed
    tuned = [fast() for _ in range(reps)]
    torch.backends.cudnn.benchmark = False
    compiled: Compiled = {}
    for mode, label in COMPILE_MODES.items() if compile_too else ():  # worth its compile time?
        torch._dynamo.reset()  # each mode compiles afresh
        # shares the parameters: `opt` still steps them. torch's stub types compile(Module) as a plain
        # callable; what it returns is an OptimizedModule, a Module
        step_model: torch.nn.Module = torch.compile(model, mode=mode)  # type: ignore[assignment]
        if mode == "reduce-overhead":
            step_model = _GraphSteps(step_model)
        sync(x.device)
        t0 = time.perf_counter()
        try:
            fast_step(step_model, opt, x, y, amp).item()
            seconds = time.perf_counter() - t0
            compiled[label] = [fast(step_model) for _ in range(reps)], seconds
        except Exception as e:  # a machine without a working compiler toolchain: report, go on
            print(f"torch.compile mode={mode} failed ({type(e).__name__}: {str(e)[:200]}); no row for it")
    torch._dynamo.reset()
    return tuned, compiled


def _roofline_rows(what: str, bound: float, eager: list[float], compiled: Compiled) -> list[dict[str, Any]]:
    """The step's roofline bound (images/s) and the share of it seglib's step reaches, eager and compiled."""
    rows = [{"what": f"{what} roofline bound", "unit": "images/s", "reference": None, "seglib": bound}]
    for how, rates in [("", eager)] + [(f" {label}", r) for label, (r, _) in compiled.items()]:
        share = statistics.median(rates) / bound
        rows.append({"what": f"{what}{how} share of roofline bound", "unit": "fraction", "seglib": share})
    return [{"reference": None, "ratio": None, **r} for r in rows]

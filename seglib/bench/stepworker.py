"""`python -m seglib.bench.stepworker`: a worker process that times training steps, for the benchmark.

An allocator is chosen when a process starts (LD_PRELOAD), so the benchmark times the original's step
(glibc, NCHW) and seglib's (jemalloc where installed, in each memory format) in processes of their own
and lets them take turns (`workers` is the parent's side). A worker speaks JSON lines, one message a line:

- out, first: {"hello": pid} once its imports are done;
- in, first: the spec {"model", "model_kwargs", "size", "batch", "steps", "mode": "reference"|"seglib",
  and optionally "formats": [names out of fastpath.FORMATS] (default: NCHW for the reference, both for
  seglib) and "choose": bool}. It picks the memory format as fit() would when "choose" is set
  (`choose_memory_format`, under its own allocator), builds one model per format on one seeded
  random batch (the reference: one NCHW model, fp32, `.item()` every step; seglib: `fast_step`), warms
  each up with one step and answers {"ready": true, "allocator", "formats", "choice": {...} | null};
- in: "run"; out: {"rates": {format: images/s}, "peak_mb": {format: MB peak RSS}, "allocator"}, each
  format timed for `steps` steps, the formats in turn (the RSS is the whole process's: a format's
  figure includes the models and optimizers of the other formats the worker holds);
- in: "quit"; it exits with status 0.

An error goes to stderr with a non-zero exit status; `StepWorker` then raises `StepWorkerError` quoting
the end of that stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import IO, Any

import torch

from ..allocator import allocator_name
from ..engine.fastpath import FORMATS, choose_memory_format
from ..engine.optimizer import build_optimizer
from ..engine.runtime import default_amp
from ..models import build_model
from .steps import choice_dict, fast_step, reference_step
from .timing import PeakRSS

CPU = torch.device("cpu")
MODES = ("reference", "seglib")
SPEC_KEYS = ("model", "model_kwargs", "size", "batch", "steps", "mode")


def check_spec(spec: Any) -> dict[str, Any]:
    """The spec with its defaults ("formats": the reference's NCHW, or both), or ValueError saying what
    is wrong with it."""
    if not isinstance(spec, dict):
        raise ValueError(f"the first line must be a JSON object (the spec), got {spec!r}")
    if missing := [k for k in SPEC_KEYS if k not in spec]:
        raise ValueError(f"the spec lacks {missing}; it needs {list(SPEC_KEYS)} and may have 'formats'")
    if spec["mode"] not in MODES:
        raise ValueError(f"mode {spec['mode']!r}: choose one of {list(MODES)}")
    if not all(isinstance(spec[k], int) and spec[k] > 0 for k in ("size", "batch", "steps")):
        raise ValueError("size, batch and steps must be positive integers")
    reference = spec["mode"] == "reference"
    formats = list(spec.get("formats") or (["nchw"] if reference else FORMATS))
    if reference and formats != ["nchw"]:
        raise ValueError(f"the reference trains in NCHW only, not {formats}")
    if len(set(formats)) < len(formats) or not set(formats) <= set(FORMATS):
        raise ValueError(f"formats {formats}: distinct names out of {list(FORMATS)}")
    return {**spec, "formats": formats, "choose": bool(spec.get("choose", False))}


def build_stepper(spec: dict[str, Any], fmt: str) -> Callable[[], torch.Tensor | None]:
    """One training step of a fresh model in `fmt` on the seeded batch: the same weights and batch for
    every format. The reference's returns None, seglib's the on-device loss + Dice."""
    memory_format = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    b, s = spec["batch"], spec["size"]
    torch.manual_seed(0)
    x = torch.randn(b, 3, s, s).contiguous(memory_format=memory_format)
    y = (torch.rand(b, 1, s, s) > 0.5).float()
    model = build_model(spec["model"], **spec["model_kwargs"]).to(memory_format=memory_format)
    if spec["mode"] == "reference":
        ref_opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        return lambda: reference_step(model, ref_opt, x, y)
    opt = build_optimizer(model.parameters(), 1e-4, 1e-4)  # as fit() trains
    amp = default_amp(CPU)
    return lambda: fast_step(model, opt, x, y, amp)


def timed_steps(step: Callable[[], torch.Tensor | None], steps: int) -> float:
    """Seconds for `steps` steps; seglib's results are summed on the device and read once, at the end."""
    t = time.perf_counter()
    total = None
    for _ in range(steps):
        out = step()
        if out is not None:
            total = out if total is None else total + out
    if total is not None:
        total.item()
    return time.perf_counter() - t


def run_round(steppers: dict[str, Callable[[], torch.Tensor | None]], spec: dict[str, Any]) -> dict[str, Any]:
    """One "run": every format timed for `steps` steps in turn, with its peak RSS."""
    rates, peaks = {}, {}
    for fmt, step in steppers.items():
        with PeakRSS(CPU) as mem:
            seconds = timed_steps(step, spec["steps"])
        rates[fmt] = spec["batch"] * spec["steps"] / seconds
        peaks[fmt] = mem.peak
    return {"rates": rates, "peak_mb": peaks, "allocator": allocator_name()}


def _send(out: IO[str], message: Any) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def serve(lines: IO[str], out: IO[str]) -> None:
    """The worker's side of the protocol (module docstring), reading `lines` and writing `out`."""
    _send(out, {"hello": os.getpid()})
    spec = check_spec(json.loads(lines.readline() or "null"))
    choice = None
    if spec["choose"]:  # before any model is built: the probe has the process to itself, as in fit()
        args = (spec["model"], spec["model_kwargs"], spec["size"], spec["batch"], CPU, default_amp(CPU))
        choice = choice_dict(choose_memory_format(*args))
    steppers = {fmt: build_stepper(spec, fmt) for fmt in spec["formats"]}
    for step in steppers.values():
        timed_steps(step, 1)  # warm-up: oneDNN's kernels, the allocator's first pages
    _send(out, {"ready": True, "allocator": allocator_name(), "formats": spec["formats"], "choice": choice})
    for line in lines:
        command = json.loads(line)
        if command == "quit":
            return
        if command != "run":
            raise ValueError(f'unknown command {command!r}; send "run" or "quit"')
        _send(out, run_round(steppers, spec))


def _protocol_stdout() -> IO[str]:
    """The real stdout for the protocol alone; anything else printed (Python or C) goes to stderr."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


def main() -> None:
    """Serve one spec on stdin/stdout; on an error its traceback on stderr and exit status 1."""
    out = _protocol_stdout()
    try:
        serve(sys.stdin, out)
    except Exception as e:
        traceback.print_exc()
        print(f"seglib.bench.stepworker: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

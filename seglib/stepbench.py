"""`python -m seglib.stepbench`: a worker process that times training steps, for `seglib.bench`.

An allocator is chosen when a process starts (LD_PRELOAD), so the benchmark times the original's step
(glibc, NCHW) and seglib's (jemalloc where installed, in each memory format) in processes of their own
and lets them take turns. A worker speaks JSON lines, one message a line:

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
the end of that stderr. This is a face: the engine never imports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import IO, Any

import torch

from .engine.allocator import allocator_name
from .engine.fastpath import FORMATS, FormatChoice, choose_memory_format
from .engine.losses import bce_loss
from .engine.optimizer import build_optimizer
from .engine.runtime import autocast, default_amp
from .metrics import confusion_counts, dice_from_counts
from .models import build_model

__all__ = [
    "PeakRSS",
    "StepWorker",
    "StepWorkerError",
    "choice_dict",
    "fast_step",
    "reference_step",
    "run_rounds",
    "step_workers",
]

CPU = torch.device("cpu")
MODES = ("reference", "seglib")
SPEC_KEYS = ("model", "model_kwargs", "size", "batch", "steps", "mode")


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


def reference_step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> None:
    """The original's step: fp32, and `.item()` on the loss and the Dice of every batch (a host sync)."""
    logits = model(x)
    loss = bce_loss(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    loss.item(), dice_from_counts(*confusion_counts(logits.detach(), y)).mean().item()


def fast_step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, amp: bool
) -> torch.Tensor:
    """seglib's step: bf16 autocast where native (`runtime.default_amp`), loss + Dice left on the device."""
    with autocast(x.device, amp):
        logits = model(x)
    loss = bce_loss(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach() + dice_from_counts(*confusion_counts(logits.detach(), y)).mean()


def choice_dict(choice: FormatChoice) -> dict[str, Any]:
    """A FormatChoice as JSON: the format's name, why, the probe's rates and this process's allocator."""
    return {
        "format": "channels_last" if choice.channels_last else "nchw",
        "source": choice.source,
        "rates": dict(choice.rates),
        "allocator": allocator_name(),
        "describe": choice.describe(),
    }


# ---- the worker ----------------------------------------------------------------------------------------


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


def run_round(steppers: dict[str, Callable[[], torch.Tensor | None]], spec: dict[str, Any]) -> dict:
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
        print(f"seglib.stepbench: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


# ---- the parent's side ---------------------------------------------------------------------------------


class StepWorkerError(RuntimeError):
    """A step worker failed; the message quotes the end of its stderr."""


class StepWorker:
    """One `python -m seglib.stepbench` process in environment `env`: `start()` hands it `spec` and
    waits until it is warmed up, `run()` times one round, `close()` ends it. A context manager."""

    def __init__(self, spec: dict[str, Any], env: dict[str, str] | None = None, label: str = "") -> None:
        self.spec, self.label = spec, label or str(spec.get("mode"))
        self.ready: dict[str, Any] = {}
        self._imported = False
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by _cleanup)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "seglib.stepbench"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )

    def __enter__(self) -> StepWorker:
        return self

    def __exit__(self, exc_type: type | None, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.kill()

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def wait_imported(self) -> None:
        """Block until the worker has imported torch and seglib (its "hello")."""
        if not self._imported:
            self._expect("hello")
            self._imported = True

    def start(self) -> dict[str, Any]:
        """Send the spec; wait until the models are built and warmed up. Its "ready" message."""
        self.wait_imported()
        self._send(self.spec)
        self.ready = self._expect("ready")
        return self.ready

    def run(self) -> dict[str, Any]:
        """One timed round: {"rates": {format: images/s}, "peak_mb": {...}, "allocator": ...}."""
        return self._expect("rates", "run")

    def close(self) -> int:
        """Send "quit" and wait for the worker to end; StepWorkerError unless it exits with status 0."""
        if self._proc.poll() is None:
            self._send("quit")
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
                raise self._error("did not quit within 60 s") from None
        if self._proc.returncode:
            raise self._error(f"exited with status {self._proc.returncode}")
        self._cleanup()
        return 0

    def kill(self) -> None:
        """End the worker now (on an error of the parent's)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        for f in (self._proc.stdin, self._proc.stdout, self._stderr):
            if f is not None and not f.closed:
                f.close()

    def _send(self, message: Any) -> None:
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except OSError:  # it has exited: the read that follows says why
            pass

    def _expect(self, key: str, command: str | None = None) -> dict[str, Any]:
        if command is not None:
            self._send(command)
        line = self._proc.stdout.readline()
        if not line:
            try:
                code = self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                code = self._proc.wait()
            raise self._error(f"exited with status {code} before its {key!r} message")
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict) or key not in message:
            self._proc.kill()
            raise self._error(f"sent {line[:200]!r} instead of its {key!r} message")
        return message

    def _error(self, what: str) -> StepWorkerError:
        tail = ""
        if not self._stderr.closed:
            self._stderr.seek(0)
            tail = self._stderr.read()[-3000:].strip()
        self._cleanup()
        return StepWorkerError(
            f"step worker {self.label!r} (python -m seglib.stepbench, {self.spec.get('model')!r}) {what}; "
            f"its stderr ends:\n{tail or '(empty)'}"
        )


@contextmanager
def step_workers(configs: dict[str, tuple[dict[str, Any], dict[str, str] | None]]) -> Iterator[dict]:
    """Workers by label from (spec, env): all import at once, then each builds, probes and warms up in
    turn, alone on the machine. They are closed on leaving (killed on an error)."""
    with ExitStack() as stack:
        workers = {
            label: stack.enter_context(StepWorker(spec, env, label)) for label, (spec, env) in configs.items()
        }
        for worker in workers.values():
            worker.wait_imported()
        for worker in workers.values():
            worker.start()
        yield workers


def run_rounds(workers: dict[str, StepWorker], reps: int) -> dict[str, list[dict[str, Any]]]:
    """`reps` rounds of one "run" per worker in turn (A B C A B C ...); each times with the machine to
    itself, and a drift of clock or temperature falls on all alike. The answers by label."""
    answers: dict[str, list[dict[str, Any]]] = {label: [] for label in workers}
    for _ in range(reps):
        for label, worker in workers.items():
            answers[label].append(worker.run())
    return answers


if __name__ == "__main__":
    main()

"""`TrainConfig.compile`: whether a run's model goes through torch.compile, and what compiling cost.

Compiling costs a fixed time up front (tens of seconds at the first training step and again at the
first validation batch, which runs the model in eval mode) and saves a share of every step after. So
"auto" (None) compiles on CUDA when the run is long enough to earn that back, and never on a CPU,
where it measured no faster (docs/performance.md). Either way the run's log says what was chosen and
what the first compiled steps took.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = [
    "COMPILE_MIN_STEPS",
    "RECOMPILE_LIMIT",
    "CompileClock",
    "choose_compile",
    "compile_module",
    "compile_room",
]

# Training steps below which compiling cannot earn its time back on a GPU: the first compiled step's
# seconds against the milliseconds each later step saves (the break-even is in docs/performance.md).
COMPILE_MIN_STEPS = 5_000


def choose_compile(requested: bool | None, device: torch.device, total_steps: int) -> tuple[bool, str]:
    """(compile or not, why) for a run of `total_steps` training steps on `device`."""
    if requested is not None:
        return requested, f"compile {'on' if requested else 'off'} (asked)"
    if device.type != "cuda":
        return False, "compile off (auto: off on a CPU)"
    if total_steps < COMPILE_MIN_STEPS:
        return False, f"compile off (auto: {total_steps:,} steps < {COMPILE_MIN_STEPS:,})"
    return True, f"compile on (auto: {total_steps:,} steps)"


# The graphs torch.compile keeps per function before it runs other shapes eagerly (torch's own limit: 8).
# A run compiles one per shape: training and validation, each with an epoch's smaller last batch, at each
# size of a progressive ladder; a notebook's runs at other sizes add theirs. Past the limit a shape would
# run eagerly in one process and compiled in another, so a resumed run would differ.
RECOMPILE_LIMIT = 64


def compile_room() -> AbstractContextManager[Any]:
    """While a compiled run trains: room for the graphs of all its shapes (`RECOMPILE_LIMIT`)."""
    limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    return torch._dynamo.config.patch(recompile_limit=limit)


def compile_module(module: nn.Module) -> nn.Module:
    """torch.compile(module): a wrapper sharing the module's parameters; its state_dict stays the module's."""
    # Static shapes: an epoch's smaller last batch gets a graph of its own. By default torch would then
    # compile one graph for every batch size and use it from there on, so the kernels (and the last
    # bits of the results) of a step would depend on what the process compiled before: a resumed run
    # would differ from an uninterrupted one.
    # torch's stubs type the result as a plain Callable; given a Module it returns an OptimizedModule.
    return torch.compile(module, dynamic=False)  # type: ignore[return-value]


@dataclass
class CompileClock:
    """The wall time of the first training step and the first validation batch of a compiled run, and of
    the first of each other batch size (an epoch's smaller last batch has a graph of its own): where
    compiling happens, so about what it cost."""

    device: torch.device
    seconds: dict[str, float] = field(default_factory=dict)
    _first_batch: dict[str, int] = field(default_factory=dict)  # the batch size of each kind's first step
    _what: str = ""
    _start: float = 0.0

    def start(self, kind: str, batch: int) -> bool:
        """Begin timing a step of `kind` ("training step", "validation batch") with `batch` images if it is
        the first of its kind and size; returns whether it is being timed."""
        first = self._first_batch.setdefault(kind, batch)
        what = f"first {kind}" if batch == first else f"first {kind} of {batch} images"
        if what in self.seconds:
            return False
        self._what, self._start = what, time.perf_counter()
        return True

    def stop(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds[self._what] = time.perf_counter() - self._start

    def describe(self) -> str:
        parts = [f"{what} {s:.1f} s" for what, s in self.seconds.items()]
        return "seglib: torch.compile: " + ", ".join(parts) + " (compiling included)"

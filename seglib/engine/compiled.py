"""`TrainConfig.compile`: whether a run's model goes through torch.compile, and what compiling cost.

Compiling costs a fixed time up front (tens of seconds at the first training step and again at the
first validation batch, which runs the model in eval mode) and saves a share of every step after. So
"auto" (None) compiles on CUDA when the run is long enough to earn that back, and never on a CPU,
where it measured no faster (docs/performance.md). Either way the run's log says what was chosen and
what the first compiled steps took.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["COMPILE_MIN_STEPS", "CompileClock", "choose_compile", "compile_module"]

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


def compile_module(module: nn.Module) -> nn.Module:
    """torch.compile(module): a wrapper sharing the module's parameters; its state_dict stays the module's."""
    # torch's stubs type the result as a plain Callable; given a Module it returns an OptimizedModule.
    return torch.compile(module)  # type: ignore[return-value]


@dataclass
class CompileClock:
    """The wall time of the first training step and the first validation batch of a compiled run:
    where compiling happens, so about what it cost."""

    device: torch.device
    seconds: dict[str, float] = field(default_factory=dict)
    _start: float = 0.0

    def start(self, what: str) -> bool:
        """Begin timing `what` if it was not timed yet; returns whether it is being timed."""
        if what in self.seconds:
            return False
        self._start = time.perf_counter()
        return True

    def stop(self, what: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds[what] = time.perf_counter() - self._start

    def describe(self) -> str:
        parts = [f"{what} {s:.1f} s" for what, s in self.seconds.items()]
        return "seglib: torch.compile: " + ", ".join(parts) + " (compiling included)"

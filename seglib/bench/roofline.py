"""A roofline bound for a training step: its FLOPs at the matmul ceiling or its bytes at the memory
bandwidth, whichever takes longer, as images/s.

The bytes are what every aten op of one eager step reads and writes (its tensor inputs and outputs,
views left out), forward, backward and the optimizer's step: each BatchNorm, ReLU, concatenation and
pad moves its tensors through memory once. That is the traffic of the unfused step, so a compiled step,
which fuses some of it away, can beat this bound; an eager one cannot.
"""

from __future__ import annotations

import copy
import time
from contextlib import nullcontext
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from ..engine.optimizer import build_optimizer

__all__ = ["StepTraffic", "memory_bandwidth", "roofline_images_per_s", "step_traffic"]

# Ops that make a view or a handle, not a copy: no bytes move.
VIEWS = {
    "view",
    "_unsafe_view",
    "reshape",
    "t",
    "transpose",
    "permute",
    "expand",
    "as_strided",
    "detach",
    "alias",
    "slice",
    "select",
    "unsqueeze",
    "squeeze",
    "unbind",
    "split",
    "split_with_sizes",
    "lift_fresh",
    "_to_copy_view",
}


class _Bytes(TorchDispatchMode):
    """Sums the bytes of every op's tensor inputs and outputs (views left out); a tensor an op writes in
    place without returning it (the fused optimizer's weights and moments) counts as an output too."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:  # TorchDispatchMode's protocol
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__.rstrip("_") not in VIEWS:
            tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
            self.total += sum(_nbytes(t) for t in tensors) + sum(
                _nbytes(t) for t in _unreturned(func, args, out)
            )
        return out


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _unreturned(func: Any, args: tuple[Any, ...], out: Any) -> list[torch.Tensor]:
    """The tensors of `args` that `func`'s schema marks as written and that it does not return."""
    returned = {id(t) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)}
    written = [
        a
        for a, spec in zip(args, func._schema.arguments, strict=False)
        if spec.alias_info and spec.alias_info.is_write
    ]
    tensors = [t for t in tree_flatten(written)[0] if isinstance(t, torch.Tensor)]
    return [t for t in tensors if id(t) not in returned]


class StepTraffic(NamedTuple):
    """What one training step computes and moves."""

    flops: int
    bytes: int


def step_traffic(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool) -> StepTraffic:
    """FLOPs and bytes of one step of a copy of `model` (forward under bf16 autocast when `amp`, BCE
    loss, backward, the step of fit's AdamW: fused where torch has the kernel) on the batch `x`, `y`; the
    model itself is left as it was."""
    net = copy.deepcopy(model)
    opt = build_optimizer(net.parameters(), 1e-4, 1e-4)
    cast = torch.autocast(x.device.type, dtype=torch.bfloat16) if amp else nullcontext()
    with FlopCounterMode(display=False) as flops, _Bytes() as moved:
        with cast:
            logits = net(x)
        nn.functional.binary_cross_entropy_with_logits(logits.float(), y).backward()
        opt.step()
    return StepTraffic(flops.get_total_flops(), moved.total)


def memory_bandwidth(device: torch.device, reps: int = 5, megabytes: int = 256) -> float:
    """GB/s of a large copy on `device` (read + write), the best of `reps`: the bandwidth ceiling."""
    src = torch.empty(megabytes * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * src.element_size() / best / 1e9


def roofline_images_per_s(traffic: StepTraffic, batch: int, gflops: float, gbs: float) -> float:
    """The bound: `batch` images per step at the slower of compute (`gflops`) and memory (`gbs`)."""
    seconds = max(traffic.flops / (gflops * 1e9), traffic.bytes / (gbs * 1e9))
    return batch / seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

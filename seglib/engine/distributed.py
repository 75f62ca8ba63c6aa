"""Data-parallel training under torchrun: one process per GPU (or per CPU worker), the same `fit` in each.

`init_distributed` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)
and joins the process group: nccl on CUDA (device cuda:LOCAL_RANK), gloo on the CPU. Anywhere else (a
notebook, `python -m seglib train`, torchrun with one process) it returns rank 0 of 1, and every helper
here does nothing, so the single-process path stays exactly what it was.
"""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .runtime import resolve_device

__all__ = [
    "RANK_0_FAILED",
    "DistInfo",
    "init_distributed",
    "cleanup",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main",
    "all_reduce_sum",
    "all_reduce_min",
    "all_reduce_max",
    "all_gather_object",
    "agree_to_stop",
    "barrier",
    "on_main",
    "main_first",
    "broadcast_buffers",
    "wrap_model",
    "convert_sync_batchnorm",
    "CpuSyncBatchNorm",
]

T = TypeVar("T")

# Seconds with the GIL free before a gloo group is destroyed: see `cleanup`.
GLOO_SETTLE_SECONDS = 0.2


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a run: rank of world_size, local_rank of local_world_size on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # "nccl" | "gloo"; None in a single process
    created: bool = False  # init_distributed made the process group (cleanup keeps it to the process's exit)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 outside torchrun)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """The number of processes of the run (1 outside torchrun)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 and in a single process: the one that writes files and prints."""
    return get_rank() == 0


def _process_device(device_pref: str, local_rank: int) -> torch.device:
    dev = resolve_device(device_pref)
    if dev.type != "cuda":
        return dev
    n = torch.cuda.device_count()
    if n == 1:  # a launcher that shows each process only its own GPU (CUDA_VISIBLE_DEVICES per process)
        return torch.device("cuda", 0)
    if local_rank >= n:
        raise ValueError(
            f"LOCAL_RANK={local_rank} but this node shows {n} GPU(s); start at most {n} "
            "processes per node (torchrun --nproc_per_node)"
        )
    return torch.device("cuda", local_rank)


def init_distributed(device_pref: str = "auto") -> DistInfo:
    """Join the run's process group when started by torchrun with more than one process; else rank 0 of 1.

    A group already initialised (the caller's, or seglib's kept from an earlier training: `cleanup`) is used as it is.
    """
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if is_distributed():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return DistInfo(
            dist.get_rank(),
            dist.get_world_size(),
            local,
            local_world,
            _process_device(device_pref, local),
            dist.get_backend(),
        )
    if env_world <= 1:
        return DistInfo(device=resolve_device(device_pref))
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={env_world} but {', '.join(missing)} not set; start distributed runs "
            "with torchrun (torchrun --nproc_per_node=N -m seglib train ...)"
        )
    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    device = _process_device(device_pref, local)
    if device.type == "cuda":
        # "cuda" (no index) then means this process's GPU, in seglib and in torch
        torch.cuda.set_device(device)
        backend = "nccl"
        dist.init_process_group(backend, device_id=device)
    else:
        backend = "gloo"
        dist.init_process_group(backend)
    return DistInfo(rank, env_world, local, local_world, device, backend, created=True)


def cleanup(info: DistInfo) -> None:
    """Keep the process group `init_distributed` created for the process's later trainings (a sweep's
    next `fit`), and destroy it when the process exits; a caller's own group is left alone.

    Destroyed after each `fit` and made again by the next, a rank could join the old group's store, still
    up on rank 0, find the old rendezvous done and go on alone: the second training waited forever."""
    backend = info.backend  # set wherever created is
    if info.created and backend is not None and dist.is_initialized() and not _KEPT:
        _KEPT.append(backend)
        atexit.register(_destroy, backend)


_KEPT: list[str] = []  # the backend of the group seglib made and keeps until the process exits


def _destroy(backend: str) -> None:
    if not dist.is_initialized():
        return
    if backend == "gloo":
        # gloo's worker threads drop a finished collective's tensors after its caller has gone on, and
        # that takes the GIL. DDP keeps the group and its threads alive past destroy_process_group, so a
        # drop still pending when the interpreter finalises aborts the rank (SIGABRT after its last
        # epoch; torch's own issue). Sleeping frees the GIL for them first.
        time.sleep(GLOO_SETTLE_SECONDS)
    dist.destroy_process_group()


def _all_reduce(tensor: torch.Tensor, op: dist.ReduceOp.RedOpType) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(tensor, op=op)
    return tensor


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over the ranks, in place (on the GPU with nccl); returned for chaining."""
    return _all_reduce(tensor, dist.ReduceOp.SUM)


def all_reduce_min(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` replaced by its minimum over the ranks, in place (as is, outside torchrun)."""
    return _all_reduce(tensor, dist.ReduceOp.MIN)


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` replaced by its maximum over the ranks, in place (as is, outside torchrun)."""
    return _all_reduce(tensor, dist.ReduceOp.MAX)


def all_gather_object(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order (`[obj]` in a single process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


_NO_BAD_STEP = 2**62  # "no non-finite loss" when the ranks take the minimum of their first bad steps


def agree_to_stop(first_bad: torch.Tensor, stop: bool) -> tuple[int, bool]:
    """What every rank decides at a step they all reached: the first step with a non-finite loss on any
    rank (0: none) and whether any rank asks to stop. In a single process, its own two values.

    A rank that stopped or raised alone would leave the others waiting in their next collective.
    """
    wants_stop = torch.tensor(int(stop), device=first_bad.device)
    if is_distributed():
        bad = all_reduce_min(torch.where(first_bad == 0, _NO_BAD_STEP, first_bad))
        first_bad = torch.where(bad == _NO_BAD_STEP, 0, bad)
        wants_stop = all_reduce_max(wants_stop)
    return int(first_bad.item()), bool(wants_stop.item())


def barrier() -> None:
    """Wait until every rank gets here (nothing outside torchrun)."""
    if is_distributed():
        dist.barrier()


RANK_0_FAILED = "rank 0 failed"  # how the other ranks' error starts where rank 0's shared one stopped them


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and hand its result to every rank; an error there is raised on every rank."""
    return _main_then_share(fn, share=True)


def main_first(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0, then on the other ranks: what rank 0 creates on disk (the synthetic data set) they
    then find there instead of all creating it at once. An error on rank 0 is raised on every rank."""
    result = _main_then_share(fn, share=False)
    return result if is_main() else fn()


def _main_then_share(fn: Callable[[], T], share: bool) -> Any:
    if not is_distributed():
        return fn()
    payload: list[Any] = [(None, None)]  # (result, error message)
    if is_main():
        try:
            result = fn()
        except Exception as e:
            # The others wait in the broadcast below: tell them, or they would hang until the timeout.
            dist.broadcast_object_list([(None, f"{type(e).__name__}: {e}")], src=0)
            raise
        payload = [(result if share else None, None)]
    dist.broadcast_object_list(payload, src=0)
    value, error = payload[0]
    if is_main():
        return result
    if error is not None:
        raise RuntimeError(f"{RANK_0_FAILED}, so rank {get_rank()} stops too: {error}")
    return value


def broadcast_buffers(module: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics): what the checkpoints hold and validation uses.

    Without SyncBatchNorm each rank's running statistics follow its own share of the data, while the weights,
    which DDP keeps equal, do not drift apart.
    """
    if is_distributed():
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel around `model` in a distributed run; `model` itself otherwise."""
    if not info.distributed:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm that normalises with the statistics of the global batch (all ranks' shares).

    torch's SyncBatchNorm runs on GPUs only; on the CPU (gloo) `CpuSyncBatchNorm` does the same.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return CpuSyncBatchNorm.convert(model)


class _AllReduceSum(torch.autograd.Function):
    """The sum over the ranks, with its gradient: every rank's input feeds every rank's loss."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d over the global batch of a distributed run, on the CPU, where nn.SyncBatchNorm refuses.

    Two all-reduces per layer (the sum and count, then the squared deviations from the global mean), both with
    gradients, so backward couples the ranks as one batch would. Outside training or a process group it is
    BatchNorm2d; its state_dict keys are BatchNorm2d's, so checkpoints load into the plain model.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        dims = [0, *range(2, x.dim())]
        x32 = x.float()  # sums of many values: float32 at least, whatever the input
        local = torch.cat([x32.sum(dims), x32.new_full((1,), x.numel() / x.shape[1])])
        total = all_reduce(local)
        count = total[-1]
        mean = total[:-1] / count
        shape = (1, -1) + (1,) * (x.dim() - 2)
        centred = x32 - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / count  # two passes: no E[x^2] - E[x]^2 cancellation
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            n, running_mean, running_var = self.num_batches_tracked, self.running_mean, self.running_var
            # BatchNorm registers these buffers as tensors wherever track_running_stats is set
            assert n is not None and running_mean is not None and running_var is not None
            with torch.no_grad():
                n.add_(1)
                f = 1.0 / float(n) if self.momentum is None else self.momentum
                running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                unbiased = var.detach() * count / (count - 1).clamp(min=1)  # what BatchNorm keeps
                running_var.mul_(1 - f).add_(unbiased, alpha=f)
        return y.to(x.dtype)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """`module` with each BatchNorm2d replaced by a CpuSyncBatchNorm sharing its tensors."""
        if isinstance(module, nn.BatchNorm2d) and not isinstance(module, cls):
            out = cls(
                module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
            )
            if module.affine:
                out.weight, out.bias = module.weight, module.bias
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(out, name, getattr(module, name))
            out.train(module.training)
            return out
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module

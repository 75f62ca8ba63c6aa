"""Device, precision, memory format and seeding: the machine-facing choices of a run."""

from __future__ import annotations

import os
import platform
import random
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "apply_determinism",
    "determinism_kept",
    "resolve_device",
    "seed_everything",
    "seed_rank_step",
    "rng_state",
    "set_rng_state",
    "autocast",
    "autocast_cache",
    "cpu_name",
    "cpu_kind",
    "default_amp",
    "native_bf16",
    "default_num_workers",
    "precision_name",
    "to_device_batch",
]


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto" -> CUDA when available, else CPU. A device this machine lacks, or one that seglib does not
    train on (only cpu, cuda and, untested, Apple's mps), raises ValueError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device={device!r} is not a device name; use 'auto', 'cpu' or 'cuda[:N]'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='cpu' or 'auto'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device={device!r} but Apple's MPS is not available here; use device='cpu' or 'auto'"
        )
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={device!r}: seglib runs on 'cpu' or 'cuda[:N]' ('auto' picks one)")
    return dev


def apply_determinism(deterministic: bool) -> None:
    """Same seed, same data, same device -> same result.

    On the CPU seglib's training is deterministic as it is (data order and augmentation come from the
    seed, see EpochSampler). On CUDA this turns cuDNN autotuning off and asks torch for deterministic
    kernels (warning where one has none); `deterministic=False` trades that for speed.
    """
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if torch.cuda.is_available():
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(deterministic, warn_only=True)


@contextmanager
def determinism_kept() -> Iterator[None]:
    """Put back, on leaving, the switches `apply_determinism` sets: a notebook's later cells run as they
    would have without the training (cuDNN autotuning, deterministic kernels, cuBLAS's workspace)."""
    cudnn = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    algorithms = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn
        torch.use_deterministic_algorithms(algorithms[0], warn_only=algorithms[1])
        if workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = workspace


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_rank_step(seed: int, step: int, rank: int) -> None:
    """Before training step `step` on a rank after the first: seed torch's generators from (seed, step, rank).

    Dropout draws from torch's generator, which `seed_everything` seeds alike on every rank, so without this
    every rank would drop the same channels of its share of the batch. Rank 0 (and a single process) keeps
    the one stream that last.pt saves, so its results stay as they were; the other ranks' draws are a
    function of the step, so a resumed run makes them again without saving them. Rank 0: nothing.
    """
    if rank:
        state = np.random.SeedSequence([seed, step, rank, 0xD80]).generate_state(1, dtype=np.uint64)[0]
        torch.manual_seed(int(state >> 1))


def rng_state() -> dict[str, Any]:
    """Every generator `seed_everything` seeds, as it stands now: saved with `last.pt` so that a resumed
    run draws the same dropout masks as an uninterrupted one."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def default_num_workers(device: torch.device, processes: int = 1) -> int:
    """0 on CPU: the model's steps are slow beside the data there, and workers would take its cores.

    On CUDA the data path is the bottleneck: one worker per core but one, at most 8, the cores shared
    by the `processes` training processes of this node (torchrun's --nproc_per_node). The cap: more
    workers were no faster on the GPU machines tried (benchmarks/gpu.sh; docs/performance.md).
    """
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // max(processes, 1) - 1))


def cpu_name() -> str:
    """The CPU's model name (platform.processor() is empty on most Linux systems)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bf16 natively: a bf16-capable GPU, or a CPU with AVX512-BF16 or AMX.

    Without it (e.g. an AVX2 CPU) bf16 is emulated and slower than fp32, so `default_amp` leaves it
    off; with it bf16 autocast trains faster than fp32 for the same Dice (docs/performance.md, "amp").
    """
    if device.type == "cuda":
        # Not emulation: a T4 or V100 makes bf16 tensors (so the default call says True) but has no
        # bf16 convolution kernels; fp16 with loss scaling is their fast path.
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so looked up with care
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def cpu_kind() -> str:
    """The CPU's name and whether it has native bf16: what a CPU's timings and budgets depend on."""
    return f"{cpu_name()} ({'with' if native_bf16(torch.device('cpu')) else 'without'} native bf16)"


def default_amp(device: torch.device) -> bool:
    """Mixed precision unless asked otherwise: always on CUDA, on a CPU only where bf16 is native."""
    return device.type == "cuda" or native_bf16(device)


def amp_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the device has it (no loss scaling needed), else fp16 on a GPU (with a GradScaler)."""
    if device.type == "cuda" and not native_bf16(device):
        return torch.float16
    return torch.bfloat16


def precision_name(device: torch.device, use_amp: bool) -> str:
    """How a run on `device` computes, in words: "bf16 autocast", "fp16 autocast" or "fp32"."""
    return f"{str(amp_dtype(device)).removeprefix('torch.')} autocast" if use_amp else "fp32"


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager[None]:
    """Mixed-precision autocast when enabled: bf16 (or fp16) on CUDA, bf16 on a CPU."""
    if enabled and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=amp_dtype(device))
    return nullcontext()


def autocast_cache(device: torch.device) -> AbstractContextManager[None]:
    """A region (autocast disabled) within which nested `autocast` regions keep the weights they cast to
    bf16 for the next: autocast drops its casts only when its outermost region exits. For inference
    loops, whose weights do not change; one forward casts every weight (a kernel each on a GPU)."""
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, enabled=False)
    return nullcontext()


def to_device_batch(
    images: torch.Tensor, masks: torch.Tensor, device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a batch to the device without blocking, images in the model's memory format."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    images = images.to(device, non_blocking=True).contiguous(memory_format=fmt)
    return images, masks.to(device, non_blocking=True)


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    # Module.to takes device and memory_format together (torch's stubs have no overload for the pair).
    return model.to(device=device, memory_format=fmt)  # type: ignore[call-overload]

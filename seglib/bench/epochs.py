"""The whole-epoch rows: data and steps together, the original's way against fit's host and device data
paths, with the share of time seglib's loop waits for data."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler

from ..allocator import allocator_name
from ..data import (
    DeviceAugment,
    EpochSampler,
    OxfordPetDataset,
    SegmentationDataset,
    collate,
    train_transform,
    uint8_transform,
)
from ..engine.batches import BatchPrep, ResidentLoader, resident_fits
from ..engine.fastpath import choose_memory_format
from ..engine.loaders import make_loader
from ..engine.runtime import default_amp
from .steps import choice_dict, fast_step, model_and_optimizer, reference_step
from .timing import info_row, interleaved, row, row_text


def epoch_rows(
    root: Path, cache: Path, dev: torch.device, reps: int, choices: dict[str, Any], log: Callable[[str], Any]
) -> list[dict[str, Any]]:
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
    ref_model, ref_opt = model_and_optimizer("unet", kwargs, dev, torch.contiguous_format, seglib=False)
    fast_model, fast_opt = model_and_optimizer("unet", kwargs, dev, fmt, seglib=True)
    waits: list[float] = []

    def sampler(ds: SegmentationDataset) -> RandomSampler:
        return RandomSampler(ds, num_samples=epoch_len)  # several shuffled passes, no repeats within one

    def ref_epoch() -> float:
        loader = DataLoader(
            ref_ds, batch_size=batch, sampler=sampler(ref_ds), num_workers=2, collate_fn=collate
        )
        return _reference_epoch(loader, ref_model, ref_opt, dev)

    # Built once with persistent workers, as fit() does: worker start-up is not part of an epoch.
    fast_loader = make_loader(fast_ds, batch, sampler(fast_ds), dev)

    def to_input(b: dict[str, Any], step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = b["image"].to(dev, non_blocking=True).contiguous(memory_format=fmt)
        return x, b["mask"].to(dev, non_blocking=True)

    def fast_epoch() -> float:
        return _timed_epoch(fast_loader, to_input, fast_model, fast_opt, default_amp(dev), waits)

    ref, fst = interleaved(ref_epoch, fast_epoch, reps)
    rows = [row(what, "images/s", ref, fst)]
    rows.append(
        info_row("seglib epoch: share of time waiting for data", "fraction", statistics.median(waits))
    )
    log(row_text(rows[0]) + f" (loader wait {statistics.median(waits):.1%})")
    epoch = (root, cache, size, batch, kwargs, passes, fmt)
    return rows + _device_epoch_rows(epoch, dev, reps, ref_epoch, what, log)


def _epoch_format(
    kwargs: dict[str, Any],
    size: int,
    batch: int,
    dev: torch.device,
    what: str,
    choices: dict[str, Any],
    log: Callable[[str], Any],
) -> torch.memory_format:
    """The memory format of the epoch's seglib model, chosen as fit() would in this process (its
    allocator); the choice goes into `choices[what]`."""
    choice = choose_memory_format("unet", kwargs, size, batch, dev, default_amp(dev))
    choices[what] = choice_dict(choice)
    log(f"{what}: seglib's {choice.describe()}, chosen under {allocator_name()} malloc")
    return torch.channels_last if choice.channels_last else torch.contiguous_format


def _reference_epoch(
    loader: DataLoader[dict[str, Any]], model: torch.nn.Module, opt: torch.optim.Optimizer, dev: torch.device
) -> float:
    """Images/s of one pass over `loader` the original's way (`reference_step`, a host sync every batch)."""
    t, n = time.perf_counter(), 0
    for b in loader:
        x, y = b["image"].to(dev), b["mask"].to(dev)
        reference_step(model, opt, x, y)
        n += x.shape[0]
    return n / (time.perf_counter() - t)


def _timed_epoch(
    batches: Iterable[dict[str, Any]],
    to_input: Callable[[dict[str, Any], int], tuple[torch.Tensor, torch.Tensor]],
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    amp: bool,
    waits: list[float],
) -> float:
    """images/s of seglib's steps over `batches` (`to_input(batch, step)` makes the model's input); the
    share of the time spent waiting for the next batch goes into `waits`."""
    t, n, wait, step = time.perf_counter(), 0, 0.0, 0
    total: torch.Tensor | float = 0.0  # a tensor on the device from the first step on
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
    epoch: tuple[Path, Path, int, int, dict[str, Any], int, torch.memory_format],
    dev: torch.device,
    reps: int,
    ref_epoch: Callable[[], float],
    what: str,
    log: Callable[[str], Any],
) -> list[dict[str, Any]]:
    """The whole-epoch row on the device data path (`TrainConfig.device_data`): uint8 batches from the
    cache (held whole on the device where it fits), normalised and augmented there, against the same
    reference epoch; and its share of time waiting for data."""
    root, cache_dir, size, batch, kwargs, passes, fmt = epoch
    ds = OxfordPetDataset(root, "trainval", uint8_transform(size)).use_cache(cache_dir, size)
    sampler = EpochSampler(len(ds), seed=0)
    resident = resident_fits(dev, ds)
    loader = ResidentLoader(ds, batch, sampler, dev) if resident else make_loader(ds, batch, sampler, dev)
    model, opt = model_and_optimizer("unet", kwargs, dev, fmt, seglib=True)
    prep = BatchPrep(dev, fmt == torch.channels_last, DeviceAugment(), seed=0)
    amp = default_amp(dev)
    waits: list[float] = []

    def all_passes() -> Iterator[dict[str, Any]]:
        for p in range(passes):
            sampler.set_epoch(p)
            yield from loader

    def device_epoch() -> float:
        return _timed_epoch(all_passes(), prep, model, opt, amp, waits)

    ref, fst = interleaved(ref_epoch, device_epoch, reps)
    how = "cache resident" if resident else "loader"
    rows = [row(f"{what}, device data path ({how})", "images/s", ref, fst)]
    rows.append(
        info_row(
            "seglib epoch, device data path: share of time waiting for data",
            "fraction",
            statistics.median(waits),
        )
    )
    log(row_text(rows[0]) + f" (loader wait {statistics.median(waits):.1%})")
    return rows

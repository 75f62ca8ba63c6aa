"""The run's data path (`TrainConfig.device_data`), and what turns a loader's batch into model input.

The host path, the original: Albumentations normalises and augments every sample in the loader, and
float32 batches travel to the device. The device path: uint8 batches travel (a quarter of the bytes)
and are normalised and augmented where the model runs (`seglib.data.device`); when the decode-once
cache fits, it is kept whole on the device (`ResidentLoader`) and no loader worker runs at all. None
takes the device path on CUDA, where the host's per-sample work starves the GPU, and the host path on
a CPU, where it costs next to nothing beside a step and the recipes' figures were measured with it.

Validation batches are bit-identical on both paths (the same normalisation table); training batches
follow the same recipe but not the same random draws. A device-path run is reproducible and resumes
bit-identically: each step's augmentation comes from (seed, global step, rank).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data import (
    CorruptSampleError,
    DeviceAugment,
    EpochSampler,
    SegmentationDataset,
    augment_seed,
    normalize_table,
    normalize_uint8,
    trimap_to_mask,
)
from .runtime import to_device_batch

__all__ = [
    "BatchPrep",
    "ResidentLoader",
    "resolve_device_data",
    "resident_fits",
]

# The share of free memory (GPU) or of RAM (CPU) a resident cache may take.
RESIDENT_SHARE = 0.25


def resolve_device_data(device_data: bool | None, device: torch.device) -> bool:
    """`TrainConfig.device_data`: None -> on CUDA only; True or False as given."""
    return device.type == "cuda" if device_data is None else bool(device_data)


@dataclass
class BatchPrep:
    """A loader's batch -> (images, masks) on the device, in the model's memory format.

    Float batches (the host path) are only moved; uint8 batches are normalised there, and with `augment`
    a training step's batch (`step` given) is augmented first, seeded by (seed, step, rank).
    """

    device: torch.device
    channels_last: bool
    augment: DeviceAugment | None = None
    seed: int = 0
    rank: int = 0
    _table: torch.Tensor | None = field(default=None, repr=False)

    def __call__(self, batch: dict[str, Any], step: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        images, masks = batch["image"], batch["mask"]
        if images.dtype != torch.uint8:
            return to_device_batch(images, masks, self.device, self.channels_last)
        images = images.to(self.device, non_blocking=True)
        masks = masks.to(self.device, non_blocking=True)
        if step is not None and self.augment is not None:
            x, m = self.augment(images, masks, augment_seed(self.seed, step, self.rank))
        else:
            x, m = normalize_uint8(images, self.table), masks.float()
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt), m

    @property
    def table(self) -> torch.Tensor:
        if self._table is None:
            self._table = normalize_table(self.device)
        return self._table


def resident_bytes(dataset: SegmentationDataset) -> int:
    """Bytes of a dataset's cache held whole: images and masks."""
    cache = dataset.cache
    return 0 if cache is None else cache.images.nbytes + cache.trimaps.nbytes


def resident_fits(device: torch.device, *datasets: SegmentationDataset) -> bool:
    """Whether the datasets' caches can stay whole on `device` together: a quarter of its free memory
    (CUDA) or of the machine's RAM (CPU) at most. A dataset without a cache: no."""
    if any(ds.cache is None for ds in datasets):
        return False
    if device.type == "cuda":
        room = torch.cuda.mem_get_info(device)[0]
    else:
        room = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return sum(resident_bytes(ds) for ds in datasets) <= RESIDENT_SHARE * room


class ResidentLoader:
    """Batches of uint8 images and masks gathered from a decode-once cache kept whole on `device`.

    It iterates like the DataLoader it replaces (the sampler's order, `drop_last`, unreadable samples
    raised or named in `skipped` as `on_corrupt` says) without workers or per-sample work.
    """

    def __init__(
        self,
        dataset: SegmentationDataset,
        batch_size: int,
        sampler: EpochSampler,
        device: torch.device,
        drop_last: bool = False,
    ) -> None:
        cache = dataset.cache
        if cache is None:
            raise ValueError("ResidentLoader needs a dataset with a decode-once cache (dataset.use_cache)")
        self.dataset, self.batch_size, self.sampler, self.drop_last = dataset, batch_size, sampler, drop_last
        self.device = device
        self.images = torch.from_numpy(np.array(cache.images)).to(device)  # (N, S, S, 3)
        masks = trimap_to_mask(np.asarray(cache.trimaps), dataset.border)
        self.masks = torch.from_numpy(masks).to(device)  # (N, S, S) uint8: 0, 1 or IGNORE_INDEX

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        pairs = list(self.sampler)
        for k in range(len(self)):
            yield self._batch([i for i, _ in pairs[k * self.batch_size : (k + 1) * self.batch_size]])

    def _batch(self, indices: list[int]) -> dict[str, Any]:
        cache, names = self.dataset.cache, self.dataset.names
        assert cache is not None  # __init__ refused a dataset without one, and a cache is never dropped
        bad = [i for i in indices if not cache.valid[i]]
        if bad and self.dataset.on_corrupt == "raise":
            raise CorruptSampleError(cache.errors[names[bad[0]]])
        skipped = [f"{names[i]} ({cache.errors[names[i]].split(': ', 1)[-1][:80]})" for i in bad]
        keep = [i for i in indices if cache.valid[i]]
        if not keep:
            return {"image": None, "skipped": skipped}
        where = torch.tensor(keep)
        if self.device.type == "cuda":  # a pageable copy would wait for the GPU: the host could not run ahead
            where = where.pin_memory()
        where = where.to(self.device, non_blocking=True)
        # NHWC bytes viewed as NCHW: the channels_last layout, made contiguous (if asked) after normalising
        images = self.images.index_select(0, where).permute(0, 3, 1, 2)
        masks = self.masks.index_select(0, where).unsqueeze(1)
        return {
            "image": images,
            "mask": masks,
            "name": [names[i] for i in keep],
            "index": torch.tensor(keep),
            "skipped": skipped,
        }

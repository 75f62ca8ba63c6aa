"""A sampler that makes every epoch's order and every sample's augmentation a function of (seed, epoch).

It yields `(index, sample_seed)` pairs; `OxfordPetDataset` seeds its transform with `sample_seed`.
So a run is reproducible whatever the number of DataLoader workers, and a resumed run sees exactly
the samples and augmentations the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["EpochSampler"]


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled (or not) indices with per-sample seeds, for one epoch at a time (`set_epoch`)."""

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist() if self.shuffle else list(range(self.n))
        seeds = np.random.SeedSequence([self.seed, self.epoch]).generate_state(self.n)
        return iter([(i, int(seeds[i])) for i in order])

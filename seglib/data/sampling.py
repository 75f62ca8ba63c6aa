"""A sampler that makes every epoch's order and every sample's augmentation a function of (seed, epoch).

It yields `(index, sample_seed)` pairs; `OxfordPetDataset` seeds its transform with `sample_seed`.
So a run is reproducible whatever the number of DataLoader workers, and a resumed run sees exactly
the samples and augmentations the uninterrupted run would have seen, from any step of an epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["EpochSampler"]


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled (or not) indices with per-sample seeds, one epoch at a time (`set_epoch`)."""

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0) -> None:
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch; `start` skips that many samples of it (resuming in the middle of an epoch)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.n - self.start

    def order(self) -> list[tuple[int, int]]:
        """The whole epoch's (index, seed) pairs."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist() if self.shuffle else list(range(self.n))
        seeds = np.random.SeedSequence([self.seed, self.epoch]).generate_state(self.n)
        return [(i, int(seeds[i])) for i in order]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.order()[self.start :])

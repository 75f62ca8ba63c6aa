"""A sampler that makes every epoch's order and every sample's augmentation a function of (seed, epoch).

It yields `(index, sample_seed)` pairs; `OxfordPetDataset` seeds its transform with `sample_seed`.
So a run is reproducible whatever the number of DataLoader workers, and a resumed run sees exactly
the samples and augmentations the uninterrupted run would have seen, from any step of an epoch.

In a distributed run each rank takes its share of the same epoch order: rank r of W takes the pairs
r, r + W, r + 2W, ... So the ranks' batches at a step together hold the samples that one process with a
W times larger batch would see at that step, with the same augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["EpochSampler"]


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled (or not) indices with per-sample seeds, one epoch at a time (`set_epoch`), one rank's share.

    `pad=True` (training) repeats the first pairs of the epoch so that every rank gets ceil(n / world_size)
    of them, as DistributedSampler does: the ranks then take the same number of steps. `pad=False`
    (evaluation) gives every sample to exactly one rank, so that sums over the ranks count it once.
    """

    def __init__(
        self,
        n: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch; `start` skips that many of this rank's samples (resuming mid-epoch)."""
        self.epoch, self.start = epoch, start

    @property
    def num_samples(self) -> int:
        """This rank's samples in a whole epoch."""
        if self.pad:
            return math.ceil(self.n / self.world_size)
        return len(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        # a run stopped after an epoch's last step resumes with `start` past a short last batch's end
        return max(0, self.num_samples - self.start)

    def epoch_order(self) -> list[tuple[int, int]]:
        """The whole epoch's (index, seed) pairs, all ranks' shares together."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist() if self.shuffle else list(range(self.n))
        seeds = np.random.SeedSequence([self.seed, self.epoch]).generate_state(self.n)
        return [(i, int(seeds[i])) for i in order]

    def order(self) -> list[tuple[int, int]]:
        """This rank's (index, seed) pairs of the epoch (all of them in a single process)."""
        pairs = self.epoch_order()
        if self.world_size == 1:
            return pairs
        if self.pad and pairs:
            total = self.num_samples * self.world_size
            pairs = (pairs * math.ceil(total / len(pairs)))[:total]  # a padded sample keeps its seed
        return pairs[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.order()[self.start :])

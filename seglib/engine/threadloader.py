"""`ThreadLoader`: a worker-less DataLoader's batches, with the samples read by threads.

For sets too small to pay for starting worker processes (evaluation on a GPU machine): in the main thread
alone the GPU waits while each image is decoded. Decoding (TorchCodec; Pillow in part) and resizing
(OpenCV) release the GIL, so threads read in parallel (docs/performance.md, "On one H200, later the
same day").
"""

from __future__ import annotations

import copy
import math
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from torch.utils.data import Dataset

from ..data import collate

__all__ = ["ThreadLoader", "default_read_threads"]


def default_read_threads(device: torch.device) -> int:
    """Reading threads for a worker-less loader: none on a CPU (its cores run the model), else one per
    core but one, at most 4. More hold the GIL from the thread that launches the model's kernels: on a
    GPU host, evaluation ran slower with more (benchmarks/eval_threads.py; docs/performance.md)."""
    if device.type == "cpu":
        return 0
    return max(1, min(4, (os.cpu_count() or 2) - 1))


class ThreadLoader:
    """The batches of `DataLoader(dataset, batch_size, sampler=sampler, collate_fn=collate)` (the same
    samples, order and collate), each sample read by one of `threads` threads ahead of its batch.

    Each thread reads through its own copy of the dataset's transform, which the dataset seeds per sample:
    random transforms stay a function of the sampler's seeds. A reading error is raised in order, where the
    DataLoader would raise it. `pin_memory`: batches (and full-resolution masks) in pinned memory, so that
    their copies to a GPU need not wait.

    `torch_threads`: torch's intra-op threads while the batches are read (restored after; None leaves
    them). 1 where the model runs on a GPU: the copies that collate and pinning make would otherwise start
    OpenMP teams whose idle spinning takes the cores the readers need, most on a machine of few cores
    (docs/performance.md).
    """

    def __init__(
        self,
        dataset: Dataset[dict[str, Any]],
        batch_size: int,
        sampler: Iterable[Any],
        threads: int,
        pin_memory: bool = False,
        torch_threads: int | None = None,
    ) -> None:
        self.dataset, self.batch_size, self.sampler = dataset, batch_size, sampler
        self.threads, self.pin_memory, self.torch_threads = max(1, threads), pin_memory, torch_threads
        self._local = threading.local()

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        keys = iter(self.sampler)
        saved = torch.get_num_threads()
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)  # before the threads start: they take it up
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="seglib-read")
        pending: deque[Future[dict[str, Any]]] = deque()
        try:
            for _ in range(2 * max(self.threads, self.batch_size)):  # samples in flight
                self._submit(pool, pending, keys)
            batch: list[dict[str, Any]] = []
            while pending:
                batch.append(pending.popleft().result())  # a reading error is raised here, in order
                self._submit(pool, pending, keys)
                if len(batch) == self.batch_size or not pending:
                    yield self._pinned(collate(batch))
                    batch = []
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(saved)

    def _submit(
        self, pool: ThreadPoolExecutor, pending: deque[Future[dict[str, Any]]], keys: Iterator[Any]
    ) -> None:
        key = next(keys, None)
        if key is not None:
            pending.append(pool.submit(self._read, key))

    def _read(self, key: Any) -> dict[str, Any]:
        """One sample, through this thread's copy of the dataset (its own transform object); its
        full-resolution mask pinned here, off the main thread."""
        if not hasattr(self._local, "dataset"):
            self._local.dataset = copy.copy(self.dataset)
            if hasattr(self.dataset, "transform"):
                self._local.dataset.transform = copy.deepcopy(self.dataset.transform)
        sample = self._local.dataset[key]
        if self.pin_memory and "mask_full" in sample:
            sample["mask_full"] = sample["mask_full"].pin_memory()
        return sample

    def _pinned(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Images and masks in pinned memory, so that their copies to the GPU need not wait."""
        if self.pin_memory:
            for key in ("image", "mask"):
                if isinstance(batch.get(key), torch.Tensor):
                    batch[key] = batch[key].pin_memory()
        return batch

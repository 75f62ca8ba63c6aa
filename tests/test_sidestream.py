"""The bench's side-stream batch preparation gives each batch what `BatchPrep` gives it, step by step
(on a CPU, where it runs in order; on CUDA the same kernels run on another stream)."""

from __future__ import annotations

import torch

from seglib.bench.sidestream import side_stream_batches
from seglib.data import DeviceAugment
from seglib.engine.batches import BatchPrep

CPU = torch.device("cpu")


def test_side_stream_batches_are_the_preps_of_each_step():
    gen = torch.Generator().manual_seed(0)
    batches = [
        {
            "image": torch.randint(0, 256, (4, 3, 24, 24), dtype=torch.uint8, generator=gen),
            "mask": torch.randint(0, 2, (4, 1, 24, 24), dtype=torch.uint8, generator=gen),
        }
        for _ in range(5)
    ]
    prep = BatchPrep(CPU, channels_last=True, augment=DeviceAugment(scale_jitter=0.25), seed=3)
    got = list(side_stream_batches(batches, prep, CPU))
    assert len(got) == 5
    for step, (batch, (x, y)) in enumerate(zip(batches, got, strict=True)):
        want_x, want_y = prep(batch, step)
        assert torch.equal(x, want_x) and torch.equal(y, want_y)
        assert x.is_contiguous(memory_format=torch.channels_last)
    assert list(side_stream_batches([], prep, CPU)) == []

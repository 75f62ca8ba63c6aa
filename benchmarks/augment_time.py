"""The device data path's augmentation (`seglib.data.DeviceAugment`) on the CPU: milliseconds per batch.

    .venv/bin/python benchmarks/augment_time.py LABEL

Batches of 8 random uint8 images and masks at 128 and 256 px, three warm-up calls, then seven timings of
ten calls each (a new seed per call), with 2 threads. Prints LABEL, the median ms per batch and the range.
Run it from two checkouts in turn (PYTHONPATH=checkout) to compare commits.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from seglib.data import DeviceAugment


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else ""
    torch.set_num_threads(2)
    aug = DeviceAugment()
    g = torch.Generator().manual_seed(0)
    for size, batch in ((128, 8), (256, 8)):
        x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
        m = torch.randint(0, 2, (batch, 1, size, size), dtype=torch.uint8, generator=g)
        for s in range(3):
            aug(x, m, s)
        ms = []
        for r in range(7):
            t = time.perf_counter()
            for s in range(10):
                aug(x, m, 100 * r + s)
            ms.append((time.perf_counter() - t) / 10 * 1e3)
        print(label, f"{size}px b{batch}: {statistics.median(ms):.2f} ms/batch ({min(ms):.2f}-{max(ms):.2f})")


if __name__ == "__main__":
    main()

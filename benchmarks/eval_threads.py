"""Evaluation against the number of reading threads: what `evaluate`'s `read_threads` buys on a machine.

    python benchmarks/eval_threads.py --device cuda [--threads 0,2,4,8] [--workers 4] [--reps 3]

On the benchmark's Oxford-sized synthetic set (384 images, 96 in test, 150-1600 px;
`seglib.bench.datapath.make_oxford_sized`) with an untrained ResNet34-UNet at 256 px, rounds in turn of:
the reference loop (`seglib.bench.evaluation`: DataLoader with 2 workers, per-image scoring); `evaluate`
with each number of reading threads, and of worker processes (started by each call, as
`evaluate(num_workers=N)` does); `evaluate` of the test set cached, with no and the default number of
threads; and the reading alone (no model; `eval_loader`, as `evaluate` reads) with no and the most
threads. Prints which decoder reads, then each one's median images/s with its range. The figures go to
docs/performance.md with the machine and date.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from seglib.bench.datapath import make_oxford_sized
from seglib.bench.evaluation import reference_eval
from seglib.data import OxfordPetDataset, eval_transform, uint8_transform
from seglib.data.decode import DECODER
from seglib.engine import evaluate
from seglib.engine.loaders import eval_loader
from seglib.engine.runtime import resolve_device
from seglib.engine.threadloader import default_read_threads
from seglib.models import build_model


def reading(test: OxfordPetDataset, threads: int, dev: torch.device) -> Callable[[], float]:
    """The samples `evaluate` reads on the device data path, without the model."""
    ds = copy.copy(test)
    ds.transform = uint8_transform(256)

    def run() -> float:
        t = time.perf_counter()
        n = sum(len(b["name"]) for b in eval_loader(ds, 8, dev, 0, read_threads=threads))
        return n / (time.perf_counter() - t)

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", default="0,2,4,8")
    p.add_argument("--workers", default="4", help="worker processes, started by each evaluate call")
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    dev = resolve_device(a.device)
    print(f"images decoded by {DECODER}", flush=True)  # first: a run cut short still says it
    counts = [int(t) for t in a.threads.split(",")]
    torch.manual_seed(0)
    model = build_model("resnet34_unet").to(dev).eval()
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    root = make_oxford_sized(Path(tempfile.mkdtemp()) / "pets", 384)
    test = OxfordPetDataset(root, "test", eval_transform(256), return_full_mask=True)

    cached = OxfordPetDataset(root, "test", eval_transform(256)).use_cache(root.parent / "cache", 256)

    def ours(threads: int, workers: int = 0, ds: OxfordPetDataset = test) -> Callable[[], float]:
        def run() -> float:
            t = time.perf_counter()
            evaluate(model_cl, ds, device=str(dev), progress=False, read_threads=threads, num_workers=workers)
            return len(ds) / (time.perf_counter() - t)

        return run

    runs = {"reference (2 workers)": reference_eval(model, test, dev)}
    runs |= {f"evaluate, {t} reading threads": ours(t) for t in counts}
    runs |= {f"evaluate, {w} worker processes": ours(0, int(w)) for w in a.workers.split(",") if w}
    default = default_read_threads(dev)
    runs |= {f"evaluate, test set cached, {t} reading threads": ours(t, 0, cached) for t in (0, default)}
    runs |= {f"reading alone, {t} threads": reading(test, t, dev) for t in (0, max(counts))}
    for run in runs.values():  # warm-up: cuDNN, allocator, page cache
        run()
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(a.reps):
        for k, run in runs.items():
            rates[k].append(run())
    where = torch.cuda.get_device_name() if dev.type == "cuda" else dev
    print(f"{len(test)} test images, {where}")
    for k, r in rates.items():
        print(f"{k}: {statistics.median(r):.0f} images/s ({min(r):.0f}-{max(r):.0f})")


if __name__ == "__main__":
    main()

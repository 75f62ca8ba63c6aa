"""Evaluation against the number of reading threads: what `evaluate`'s `read_threads` buys on a machine.

    python benchmarks/eval_threads.py --device cuda [--threads 0,2,4,8] [--workers 4] [--reps 3]
        [--test 96] [--breakdown]

On the benchmark's Oxford-sized synthetic set (384 images, `--test` in test (the bench's 96), 150-1600
px; `seglib.bench.datapath.oxford_sized_set`, made once and reused) with an untrained ResNet34-UNet
at 256 px, rounds in turn of: the reference loop (`seglib.bench.evaluation`: DataLoader with 2 workers, per-image scoring);
`evaluate` with its defaults (threads for at most `SMALL_EVAL` images, else worker processes); with each number of reading threads, and of worker processes (started by each call, as
`evaluate(num_workers=N)` does); `evaluate` of the test set cached, with no and the default number of
threads; and the reading alone (no model; `eval_loader`, as `evaluate` reads) with no and the most
threads. Prints which decoder reads, then each one's median images/s with its range. `--breakdown`
first gives the share of time `evaluate`'s loop waits for batches (threads, a 0.5 ms GIL switch
interval, worker processes kept between calls) and torch.profiler's table of one evaluation. The
figures go to docs/performance.md with the machine and date.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import torch

from seglib.bench.datapath import oxford_sized_set
from seglib.bench.evaluation import reference_eval
from seglib.data import EpochSampler, OxfordPetDataset, eval_transform, uint8_transform
from seglib.data.decode import DECODER
from seglib.engine import evaluate
from seglib.engine.loaders import eval_loader, make_loader
from seglib.engine.runtime import resolve_device
from seglib.engine.threadloader import default_read_threads
from seglib.models import build_model

evaluate_module = importlib.import_module(
    "seglib.engine.evaluate"
)  # the module; seglib.engine.evaluate is the function


def reading(test: OxfordPetDataset, threads: int, dev: torch.device) -> Callable[[], float]:
    """The samples `evaluate` reads on the device data path, without the model."""
    ds = copy.copy(test)
    ds.transform = uint8_transform(256)

    def run() -> float:
        t = time.perf_counter()
        n = sum(len(b["name"]) for b in eval_loader(ds, 8, dev, 0, read_threads=threads))
        return n / (time.perf_counter() - t)

    return run


class Waits:
    """`eval_loader` as `evaluate` calls it, timing how long its caller waits for each batch; with
    `persistent`, a DataLoader of that many worker processes started once and reused by every call
    (what reader processes kept between calls would give)."""

    def __init__(self, dev: torch.device, persistent: int = 0) -> None:
        self.dev, self.persistent, self.loader, self.waited = dev, persistent, None, 0.0

    def __call__(self, ds, batch_size, device, workers, **kw):  # noqa: ANN001, ANN003, ANN204
        if self.persistent and self.loader is None:
            sampler = EpochSampler(len(ds), shuffle=False, pad=False)
            self.loader = make_loader(ds, batch_size, sampler, device, self.persistent)
        loader = self.loader or eval_loader(ds, batch_size, device, workers, **kw)
        it = iter(loader)
        while True:
            t = time.perf_counter()
            batch = next(it, None)
            self.waited += time.perf_counter() - t
            if batch is None:
                return
            yield batch


def breakdown(model_cl, test, dev: torch.device, threads: int, reps: int) -> None:  # noqa: ANN001
    """Where evaluate's time goes: the share its loop waits for batches, with `threads` reading threads,
    persistent worker processes, and a smaller GIL switch interval."""
    original = evaluate_module.eval_loader
    for label, waits, interval in (
        (f"{threads} reading threads", Waits(dev), None),
        (f"{threads} reading threads, switch interval 0.5 ms", Waits(dev), 0.0005),
        ("8 persistent worker processes", Waits(dev, 8), None),
        ("15 persistent worker processes", Waits(dev, 15), None),
    ):
        saved = sys.getswitchinterval()
        evaluate_module.eval_loader = waits
        try:
            if interval:
                sys.setswitchinterval(interval)
            rates, total = [], 0.0
            for rep in range(reps + 1):  # the first: warm-up (and the persistent workers' start)
                waits.waited, t = 0.0, time.perf_counter()
                evaluate(model_cl, test, device=str(dev), progress=False, read_threads=threads)
                took = time.perf_counter() - t
                if rep:
                    rates.append(len(test) / took)
                    total += waits.waited / took
        finally:
            evaluate_module.eval_loader = original
            sys.setswitchinterval(saved)
        print(f"breakdown, {label}: {statistics.median(rates):.0f} images/s, waiting {total / reps:.0%}")


def profiled(model_cl, ds, dev: torch.device, threads: int) -> None:  # noqa: ANN001
    """torch.profiler's table of one `evaluate` of `ds`: which operators take the main thread's time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        evaluate(model_cl, ds, device=str(dev), progress=False, read_threads=threads)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=40))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", default="0,2,4,8")
    p.add_argument("--workers", default="4", help="worker processes, started by each evaluate call")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--test", type=int, default=96, help="test images (the bench's set: 96)")
    p.add_argument("--breakdown", action="store_true", help="first: the share of time waiting for data")
    a = p.parse_args()
    dev = resolve_device(a.device)
    print(f"images decoded by {DECODER}", flush=True)  # first: a run cut short still says it
    counts = [int(t) for t in a.threads.split(",")]
    torch.manual_seed(0)
    model = build_model("resnet34_unet").to(dev).eval()
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    # The bench's set; for another test split no more than 8 trainval images (the reading never uses them)
    root = oxford_sized_set(384 if a.test == 96 else 8, n_test=a.test)
    test = OxfordPetDataset(root, "test", eval_transform(256), return_full_mask=True)

    cached = OxfordPetDataset(root, "test", eval_transform(256)).use_cache(tempfile.mkdtemp(), 256)
    if a.breakdown:
        for ds in (test, cached):
            print(f"{'cached' if ds is cached else 'read'}:", flush=True)
            breakdown(model_cl, ds, dev, default_read_threads(dev), a.reps)
        profiled(model_cl, cached, dev, default_read_threads(dev))

    def ours(
        threads: int | None, workers: int | None = 0, ds: OxfordPetDataset = test
    ) -> Callable[[], float]:
        def run() -> float:
            t = time.perf_counter()
            evaluate(model_cl, ds, device=str(dev), progress=False, read_threads=threads, num_workers=workers)
            return len(ds) / (time.perf_counter() - t)

        return run

    runs = {
        "reference (2 workers)": reference_eval(model, test, dev),
        "evaluate, its defaults": ours(None, None),
    }
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

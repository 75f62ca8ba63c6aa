"""What the device data path costs beside the training step: the last few per cent of a GPU epoch.

    python benchmarks/prep_cost.py --device cuda [--batch 32] [--size 256] [--steps 40]

On the benchmark's Oxford-sized synthetic set (`seglib.bench.datapath.oxford_sized_set`, 384 images,
made once and reused) cached and held on the device (`ResidentLoader`), with the UNet and seglib's step
(`seglib.bench.steps.fast_step`, bf16 autocast where native) as `seglib.bench`'s epoch rows run them,
it times `--steps` batches of: the step alone on one prepared batch; the batches alone (gathered from
the resident cache, normalised and augmented by `BatchPrep` + `DeviceAugment`); and both, as an epoch
runs them. Each is timed from a synchronised start to a synchronised end, so a figure is the slower of
the host's and the device's time. Then torch.profiler's top CUDA kernels of the batches alone. With
`--compile`, the batches and the epoch again with DeviceAugment's four colour steps each compiled
(`torch.compile` fuses their elementwise chains; one function a step, so the order drawn per batch
needs no recompile), and the time the first compiled batch took. An experiment: `fit` does not
compile the augmentation. Prints milliseconds per batch; the figures go to docs/performance.md with
the machine and date.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
import types
from collections.abc import Callable

import torch

from seglib.bench.datapath import oxford_sized_set
from seglib.bench.steps import fast_step, model_and_optimizer
from seglib.data import DeviceAugment, EpochSampler, OxfordPetDataset, uint8_transform
from seglib.engine.batches import BatchPrep, ResidentLoader
from seglib.engine.runtime import default_amp, resolve_device


def per_batch(run: Callable[[int], None], steps: int, dev: torch.device) -> float:
    """Milliseconds per batch of `run(k)` for k < steps, synchronised at both ends (after a warm-up)."""
    for k in range(3):
        run(k)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for k in range(steps):
        run(k)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1000 / steps


COLOUR_STEPS = (
    "adjust_brightness_accumulative",
    "adjust_contrast_with_mean_subtraction",
    "adjust_saturation_with_gray_subtraction",
    "adjust_hue",
)


def colour_compiled(augment: DeviceAugment) -> DeviceAugment:
    """A copy of `augment` whose four colour steps (kornia's, as `DeviceAugment._jitter` calls them) are
    each compiled."""
    out = copy.copy(augment)
    out.enhance = types.SimpleNamespace(
        **{n: torch.compile(getattr(augment.enhance, n)) for n in COLOUR_STEPS}
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--compile", action="store_true", help="also with the colour steps compiled")
    a = p.parse_args()
    dev = resolve_device(a.device)
    root = oxford_sized_set(384)
    ds = OxfordPetDataset(root, "trainval", uint8_transform(a.size)).use_cache(tempfile.mkdtemp(), a.size)
    sampler = EpochSampler(len(ds), seed=0)
    loader = ResidentLoader(ds, a.batch, sampler, dev)
    batches = [b for _ in range(1 + a.steps // len(loader)) for b in loader][: a.steps + 3]
    prep = BatchPrep(dev, True, DeviceAugment(), seed=0)
    model, opt = model_and_optimizer("unet", {}, dev, torch.channels_last, seglib=True)
    amp = default_amp(dev)
    x, y = prep(batches[0], 0)

    def step(k: int) -> None:
        fast_step(model, opt, x, y, amp)

    def batch(k: int) -> None:
        prep(loader._batch(batches[k]["index"].tolist()), k)

    def both(k: int) -> None:
        fast_step(model, opt, *prep(loader._batch(batches[k]["index"].tolist()), k), amp)

    where = torch.cuda.get_device_name() if dev.type == "cuda" else dev
    print(f"UNet {a.size} px, batch {a.batch}, {where}, torch {torch.__version__}")
    for label, run in (("step alone", step), ("batches alone", batch), ("both (an epoch)", both)):
        print(f"{label}: {per_batch(run, a.steps, dev):.2f} ms per batch", flush=True)
    if a.compile:
        plain = prep.augment
        prep.augment = colour_compiled(plain)
        t = time.perf_counter()
        batch(0)
        print(f"first batch, colour steps compiled: {time.perf_counter() - t:.1f} s", flush=True)
        for label, run in (("batches alone, colour compiled", batch), ("both, colour compiled", both)):
            print(f"{label}: {per_batch(run, a.steps, dev):.2f} ms per batch", flush=True)
        prep.augment = plain
    if dev.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for k in range(10):
                batch(k)
            torch.cuda.synchronize()
        print(
            prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=15, max_name_column_width=50)
        )


if __name__ == "__main__":
    main()

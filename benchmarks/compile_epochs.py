"""Does `torch.compile` pay on this CPU? Epoch seconds of the recommended recipe, eager and compiled, in
one process, taking turns.

    env $(.venv/bin/python -m seglib.jemalloc) .venv/bin/python benchmarks/compile_epochs.py \
        [--fp32] [--epochs 3] [--root DATA_ROOT] MODEL:SIZE ...     # e.g. resnet34_unet:128

For each MODEL:SIZE, two rounds (eager then compiled, then compiled then eager) each train `--epochs`
real epochs on the real sample (data, augmentation, EMA and validation included) and print every
epoch's seconds and the last validation Dice. A compiled run's first epoch holds the compiling; the
second compiled run of a round reuses torch's caches. `--fp32` trains without autocast, as on a CPU
without native bf16 (under `benchmarks/avx2_proxy.sh` also with that CPU's kernels).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from dataclasses import replace

import torch

from seglib.allocator import allocator_name
from seglib.engine import config_from_profile, fit
from seglib.engine.runtime import cpu_kind
from seglib.provenance import stamp

SAMPLE = "../shared/data/oxford-pet-sample/oxford-iiit-pet"


def _run(model: str, size: int, compiled: bool, args: argparse.Namespace, tmp: str) -> None:
    cfg = config_from_profile("recommended", model=model, data_root=args.root, output_dir=f"{tmp}/runs")
    cfg = replace(
        cfg,
        image_size=size,
        cache_dir=f"{tmp}/cache",
        amp=not args.fp32,
        compile=compiled,
        epochs=args.epochs,
        checkpoint_every=0,
        run_name="compile-epochs",
        overwrite=True,
        progress=False,
    )
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the run's own lines
        result = fit(cfg)
    epochs = " ".join(f"{s:.2f}" for s in result.history.seconds)
    print(
        f"{model} {size} px {'compiled' if compiled else 'eager'}: epochs {epochs} s; "
        f"val Dice {result.history.val_dice.iloc[-1]:.4f}; {time.perf_counter() - start:.1f} s in all",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", nargs="+", metavar="MODEL:SIZE")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--fp32", action="store_true", help="no autocast (a CPU without native bf16 trains so)")
    ap.add_argument("--root", default=SAMPLE)
    args = ap.parse_args()
    print(stamp() | {"machine": cpu_kind(), "torch": torch.__version__, "allocator": allocator_name()})
    with tempfile.TemporaryDirectory(prefix="seglib-compile-") as tmp:
        for pair in args.pairs:
            model, size = pair.split(":")
            for order in ((False, True), (True, False)):
                for compiled in order:
                    _run(model, int(size), compiled, args, tmp)


if __name__ == "__main__":
    main()

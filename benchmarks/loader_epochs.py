"""Epoch seconds of a data-bound fit with persistent loader workers: a width-4 UNet at 128 px on the real
sample's 270 training images, batch 8, 2 workers, NCHW, 5 epochs; prints each epoch and the median of
epochs 2-5. Compare two commits by running it from a worktree of each, in turn:

    env $(.venv/bin/python -m seglib.jemalloc) PYTHONPATH=WORKTREE .venv/bin/python \
        benchmarks/loader_epochs.py --root SAMPLE/oxford-iiit-pet --out /tmp/loader-epochs --label NAME
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

from seglib.engine import config_from_profile, fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="the real sample's oxford-iiit-pet folder")
    ap.add_argument("--out", required=True, help="a folder for the run")
    ap.add_argument("--label", default="", help="printed before the figures")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    cfg = config_from_profile(
        "quick", model="unet", data_root=args.root, dataset="oxford-pet", output_dir=args.out, progress=False
    )
    cfg = replace(
        cfg,
        model_kwargs={"base_channels": 4},
        image_size=128,
        batch_size=8,
        epochs=5,
        budget_minutes=None,
        progressive_sizes=None,
        num_workers=args.workers,
        channels_last=False,
        run_name="loader-epochs",
        overwrite=True,
    )
    seconds = fit(cfg).history.seconds.tolist()
    epochs = " ".join(f"{s:.2f}" for s in seconds)
    print(f"{args.label}: epochs {epochs} s; median of epochs 2-5 {statistics.median(seconds[1:]):.3f} s")


if __name__ == "__main__":
    main()

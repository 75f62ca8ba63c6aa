"""What the fused optimizer buys: epoch seconds as notebook 06 times them, AdamW fused against torch's
default, in one process, taking turns.

    env $(.venv/bin/python -m seglib.jemalloc) .venv/bin/python benchmarks/fused_epochs.py \
        [--rounds 3] [--sizes 64,96,128,160] [--fp32] [--root DATA_ROOT] [--csv PATH]

For each recommended model and image size, each round times one epoch of each optimizer as
`seglib.study.estimate_epoch_seconds` does (two real epochs on the real sample, the second timed; data,
augmentation, EMA and validation included; no margin), the two in turn. "default" is the optimizer
before `seglib/engine/optimizer.py`: this script empties its FUSED_DEVICES for those epochs (a
benchmark's switch, put back after). Prints and writes the median seconds an epoch and the epochs a
12-minute budget buys with the notebook's margin (docs/performance.md, "The fused optimizer").
`--fp32` trains without autocast, as on a CPU without native bf16.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
from dataclasses import replace

import pandas as pd
import torch

from seglib.allocator import allocator_name
from seglib.engine import config_from_profile
from seglib.engine import optimizer as optim
from seglib.engine.io import atomic_write_csv
from seglib.engine.runtime import cpu_kind
from seglib.provenance import stamp
from seglib.study import epochs_for_budget, estimate_epoch_seconds

SAMPLE = "../shared/data/oxford-pet-sample/oxford-iiit-pet"
MARGIN = 1.15  # estimate_epoch_seconds's default: what notebook 06 plans with
VARIANTS = {"default": (), "fused": optim.FUSED_DEVICES}


def _epoch_seconds(cfg, variant: str) -> float:
    saved = optim.FUSED_DEVICES
    optim.FUSED_DEVICES = VARIANTS[variant]
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the probe run's own lines
            return estimate_epoch_seconds(cfg, margin=1.0)
    finally:
        optim.FUSED_DEVICES = saved


def _rows(root: str, sizes: list[int], rounds: int, amp: bool, tmp: str) -> list[dict]:
    rows = []
    for model in ("unet", "resnet34_unet"):
        for size in sizes:
            cfg = config_from_profile("recommended", model=model, data_root=root, output_dir=f"{tmp}/runs")
            cfg = replace(cfg, image_size=size, cache_dir=f"{tmp}/cache", amp=amp)
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for r in range(rounds):
                order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
                for v in order:
                    times[v].append(_epoch_seconds(cfg, v))
            for v, ts in times.items():
                med = statistics.median(ts)
                row = {"model": model, "image_size": size, "precision": "bf16" if amp else "fp32"}
                row |= {"optimizer": v, "epoch_seconds": round(med, 2)}
                row |= {"epoch_seconds_min": round(min(ts), 2), "epoch_seconds_max": round(max(ts), 2)}
                row["epochs_in_12_min"] = epochs_for_budget(cfg, 12, MARGIN * med)
                rows.append(row)
                print(
                    f"{model} {size} px {v}: {med:.2f} s an epoch ({min(ts):.2f}-{max(ts):.2f}), "
                    f"{row['epochs_in_12_min']} epochs in 12 min",
                    flush=True,
                )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="64,96,128,160")
    ap.add_argument("--fp32", action="store_true", help="no autocast (a CPU without native bf16 trains so)")
    ap.add_argument("--root", default=SAMPLE)
    ap.add_argument("--csv", default="")
    args = ap.parse_args()
    facts = stamp() | {"machine": cpu_kind(), "torch": torch.__version__, "allocator": allocator_name()}
    print(facts, flush=True)
    with tempfile.TemporaryDirectory(prefix="seglib-fused-") as tmp:
        rows = [
            facts | r
            for r in _rows(
                args.root, [int(s) for s in args.sizes.split(",")], args.rounds, not args.fp32, tmp
            )
        ]
    if args.csv:
        atomic_write_csv(pd.DataFrame(rows), args.csv)


if __name__ == "__main__":
    main()

"""Seconds an epoch of each recommended recipe costs at each image size, as notebook 06 times it
(`seglib.study.estimate_epoch_seconds`: two real epochs on the real sample, the second timed, x 1.15).

    env $(.venv/bin/python -m seglib.jemalloc) .venv/bin/python benchmarks/epoch_pace.py [DATA_ROOT]

Prints one JSON line per model and size: the UNet (width 16) and the ResNet34-UNet (width 32) at 64-160 px,
and the ResNet34-UNet at width 64 at 96 px (the recipe's width before 2026-12-02, the one the Zen 3 kind
timed). Under `benchmarks/avx2_proxy.sh` it gives the fp32 kind's kernels' pace (docs/experiments/
recipe_study.md, "the ResNet34-UNet's pace").
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace

from seglib.engine import config_from_profile
from seglib.engine.runtime import cpu_kind
from seglib.study import estimate_epoch_seconds

SAMPLE = "../shared/data/oxford-pet-sample/oxford-iiit-pet"
RUNS = [(m, None, s) for m in ("unet", "resnet34_unet") for s in (64, 96, 128, 160)]
RUNS += [("resnet34_unet", 64, 96)]


def main() -> None:
    root = sys.argv[1] if len(sys.argv) > 1 else SAMPLE
    with tempfile.TemporaryDirectory(prefix="seglib-pace-") as tmp:
        for model, width, size in RUNS:
            cfg = config_from_profile("recommended", model=model, data_root=root, output_dir=f"{tmp}/runs")
            kwargs = cfg.model_kwargs if width is None else {**cfg.model_kwargs, "base_channels": width}
            cfg = replace(cfg, image_size=size, model_kwargs=kwargs, progress=False)
            seconds = estimate_epoch_seconds(cfg)
            row = {"model": model, "width": kwargs.get("base_channels"), "image_size": size}
            print(json.dumps({**row, "epoch_seconds": round(seconds, 2), "machine": cpu_kind()}), flush=True)


if __name__ == "__main__":
    main()

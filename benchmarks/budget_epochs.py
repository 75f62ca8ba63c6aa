"""How many epochs a 12-minute budget buys for the recommended recipes, timed as notebook 06 times them
(`seglib.study.estimate_epoch_seconds`: two real epochs on the real sample, the second timed, x 1.15).

    .venv/bin/python benchmarks/budget_epochs.py [auto|channels_last|nchw] [DATA_ROOT]

"auto" is seglib's default (the probed memory format). Run it once under glibc (SEGLIB_JEMALLOC=0, no
LD_PRELOAD) and once under jemalloc (LD_PRELOAD=... MALLOC_CONF=..., docs/performance.md) to compare.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace

from seglib.allocator import allocator_name
from seglib.engine import config_from_profile
from seglib.study import epochs_for_budget, estimate_epoch_seconds

SAMPLE = "../shared/data/oxford-pet-sample/oxford-iiit-pet"


def main() -> None:
    fmt = sys.argv[1] if len(sys.argv) > 1 else "auto"
    root = sys.argv[2] if len(sys.argv) > 2 else SAMPLE
    with tempfile.TemporaryDirectory(prefix="seglib-budget-") as tmp:
        for model in ("unet", "resnet34_unet"):
            cfg = config_from_profile("recommended", model=model, data_root=root, output_dir=f"{tmp}/runs")
            if fmt != "auto":
                cfg = replace(cfg, channels_last=fmt == "channels_last")
            seconds = estimate_epoch_seconds(cfg)
            epochs = epochs_for_budget(cfg, 12, seconds)
            print(
                f"{model} {cfg.image_size} px, {fmt}, {allocator_name()}: {seconds:.1f} s an epoch, {epochs} epochs"
            )


if __name__ == "__main__":
    main()

"""One 12-minute training of a recommended recipe at a chosen image size on this CPU, then its Dice.

    env $(.venv/bin/python -m seglib.engine.allocator) .venv/bin/python benchmarks/budget_size.py unet 128 0 [ROOT] [--test]

Times two epochs as notebook 06 does (`seglib.study.estimate_epoch_seconds`), trains the epochs that fit
12 minutes (`epochs_for_budget`), and scores the best model on the validation images at original
resolution (the recipe's own TTA), and on the test images with `--test` only: a lever is chosen on
validation, and the test images are scored once per seed of the final recipe (issue 22). Prints one
JSON line (docs/experiments/recipe_study.md).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

from seglib.engine import config_from_profile, evaluate, fit, load_model, summarize
from seglib.engine.loaders import split_dataset
from seglib.engine.runtime import cpu_kind
from seglib.study import epochs_for_budget, estimate_epoch_seconds

SAMPLE = "../shared/data/oxford-pet-sample/oxford-iiit-pet"


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--test"]
    model, size, seed = args[0], int(args[1]), int(args[2])
    root = args[3] if len(args) > 3 else SAMPLE
    splits = ("val", "test") if "--test" in sys.argv else ("val",)
    cfg = config_from_profile("recommended", model=model, data_root=root, output_dir="results/budget-size")
    cfg = replace(cfg, image_size=size, seed=seed, run_name=f"{model}-{size}-s{seed}", overwrite=True)
    cfg = replace(cfg, progress=False)
    seconds = estimate_epoch_seconds(cfg)
    cfg = replace(cfg, epochs=epochs_for_budget(cfg, 12, seconds))
    t0 = time.perf_counter()
    result = fit(cfg)
    out = {"model": model, "image_size": size, "seed": seed, "epochs": cfg.epochs}
    out["train_minutes"] = round((time.perf_counter() - t0) / 60, 2)
    best = load_model(result.best_checkpoint)
    for split in splits:
        table = evaluate(best, split_dataset(cfg, split), device="cpu", progress=False, tta=cfg.tta)
        out[f"{split}_dice"] = round(float(summarize(table).loc["original", "dice_mean"]), 4)
    out["machine"] = cpu_kind()
    print(json.dumps(out))


if __name__ == "__main__":
    main()

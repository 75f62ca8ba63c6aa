"""One 12-minute training of a recommended recipe at a chosen image size on this CPU, then its Dice.

    env $(.venv/bin/python -m seglib.jemalloc) .venv/bin/python benchmarks/budget_size.py unet 128 0 [ROOT] [--test]
        [--epochs=N] [SETTING=VALUE ...]

Times two epochs of each size as notebook 06 does (`seglib.study.fit_to_budget`), trains the epochs that fit
12 minutes (re-planned as it trains: `budget_minutes`; `--epochs=N`: N instead,
untimed), and scores the best model on the validation images at original resolution (the recipe's own
TTA), and on the test images with `--test` only: a lever is chosen on validation, and the test images are
scored once per seed of the final recipe (issue 22). `SETTING=VALUE` (JSON, else text) changes a TrainConfig setting of the recommended
preset, e.g. `scale_jitter=0` or
`progressive_sizes=[64,96] progressive_share=0.67`; `base_channels=32` the model's width. Prints one JSON line
(docs/experiments/recipe_study.md).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import fields, replace

from seglib.engine import TrainConfig, config_from_profile, evaluate, fit, load_model, summarize
from seglib.engine.loaders import split_dataset
from seglib.engine.runtime import cpu_kind
from seglib.study import fit_to_budget, json_or_text

SAMPLE = "../shared/data/oxford-pet-sample/oxford-iiit-pet"


def main() -> None:
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    settings = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a and not a.startswith("--"))
    args = [a for a in sys.argv[1:] if a not in flags and "=" not in a]
    model, size, seed = args[0], int(args[1]), int(args[2])
    root = args[3] if len(args) > 3 else SAMPLE
    splits = ("val", "test") if "--test" in flags else ("val",)
    epochs = next((int(f.split("=")[1]) for f in flags if f.startswith("--epochs=")), 0)
    cfg = config_from_profile("recommended", model=model, data_root=root, output_dir="results/budget-size")
    cfg = replace(cfg, image_size=size, seed=seed, run_name=f"{model}-{size}-s{seed}", overwrite=True)
    known = {f.name for f in fields(TrainConfig)} | {"base_channels"}
    unknown = sorted(set(settings) - known)
    if unknown:
        sys.exit(
            f"budget_size.py: unknown setting(s) {unknown}; SETTING=VALUE takes a TrainConfig field or base_channels"
        )
    changes = {k: json_or_text(v) for k, v in settings.items()}  # as notebook 06's recipe items
    if "base_channels" in changes:
        changes["model_kwargs"] = {**cfg.model_kwargs, "base_channels": changes.pop("base_channels")}
    cfg = replace(cfg, **{"progress": False, **changes})  # a setting given wins, progress too
    # as notebook 06: planned from a probe of each size, then re-planned as the run trains
    cfg = replace(cfg, epochs=epochs) if epochs else fit_to_budget(cfg, 12)
    t0 = time.perf_counter()
    result = fit(cfg)
    out = {"model": model, "image_size": size, "seed": seed, "epochs": result.config.epochs, **settings}
    out["train_minutes"] = round((time.perf_counter() - t0) / 60, 2)
    best = load_model(result.best_checkpoint)
    for split in splits:
        table = evaluate(best, split_dataset(cfg, split), device="cpu", progress=False, tta=cfg.tta)
        out[f"{split}_dice"] = round(float(summarize(table).loc["original", "dice_mean"]), 4)
    out["machine"] = cpu_kind()
    print(json.dumps(out))


if __name__ == "__main__":
    main()

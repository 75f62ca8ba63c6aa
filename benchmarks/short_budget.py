"""Recipe variants at a short budget, scored on the validation images only (issue 22: choose on val).

    env $(.venv/bin/python -m seglib.jemalloc) .venv/bin/python benchmarks/short_budget.py \
        unet 1 42,7,1 "recommended,recommended+batch_size=4,recommended+lr=0.004" [160=10.9,128=6.2,96=4.1,64=2.9]

Plans each variant as notebook 06 does (`seglib.study.plan_recipe_study`: the size from the epochs the
budget buys, the model's additions dropped where no size gets its epochs), trains it (re-planning its
epochs as it runs), and scores its last model on the 30 validation images at original resolution. The
last argument gives the seconds of an epoch per image size (the plan's estimate, margin included) for
every variant, so that all of them plan alike and nothing is timed; without it each variant is timed
as notebook 06 times it. Prints one JSON line per run (docs/experiments/recipe_study.md). The real
sample is at ../shared/data/oxford-pet-sample, or where SAMPLE says (as for benchmarks/cpu_kind.sh).
"""

from __future__ import annotations

import json
import os
import sys

from seglib.engine import evaluate, fit, load_model, summarize
from seglib.engine.loaders import split_dataset
from seglib.engine.runtime import cpu_kind
from seglib.study import RECIPE_STUDIES, parse_recipes, plan_recipe_study
from seglib.workspace import start

SAMPLE = os.environ.get("SAMPLE", "../shared/data/oxford-pet-sample")


def main() -> None:
    model, minutes, seeds, recipes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    given = dict(s.split("=") for s in sys.argv[5].split(",")) if len(sys.argv) > 5 else {}
    seconds = {int(k): float(v) for k, v in given.items()}
    ws = start("short_budget", SAMPLE, "oxford-pet", "recommended", "results/short-budget", "cpu")
    study = RECIPE_STUDIES["recommended"].with_params(recipes, minutes, -1, 0, 0)
    timed = {label: dict(seconds) for label in parse_recipes(recipes)} if seconds else None
    for seed in (int(s) for s in seeds.split(",")):
        plan = plan_recipe_study(ws.config, study, model, "recommended", seed=seed, epoch_seconds=timed)
        for label, _, cfg in plan.jobs:
            run = fit(cfg)
            table = evaluate(
                load_model(run.last_checkpoint),
                split_dataset(cfg, "val"),
                device="cpu",
                progress=False,
                tta=cfg.tta,
            )
            row = {"variant": label, "seed": seed, "image_size": cfg.image_size, "epochs": len(run.history)}
            row["minutes"] = round(float(run.history.seconds.sum()) / 60, 2)
            row["val_dice"] = round(float(summarize(table).loc["original", "dice_mean"]), 4)
            print(json.dumps({**row, "machine": cpu_kind()}), flush=True)


if __name__ == "__main__":
    main()

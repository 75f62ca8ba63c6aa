"""Multi-scale test-time augmentation, scored on the validation images of trained runs (issue 22's levers).

    .venv/bin/python benchmarks/tta_scales.py 'RUNS_GLOB' [...] [--ratio 1.2] [--root DATA_ROOT] [--csv PATH]
        [--evaluate]

For each run folder (its config.json and best.pt), every validation image at original resolution is
scored five ways: at the run's size s alone, without TTA ("plain": the recipes' evaluation, `tta`
False) and with flip TTA ("flip": `evaluate(..., tta=True)`); with the logits at a second size
s2 = s x ratio (to a multiple of 32) averaged in, each with flip TTA, the second input resized from
the original image ("flip_original") or from the s-size input tensor ("flip_tensor", what a batched
evaluation could do); and the tensor's two sizes without flip ("tensor"). `--evaluate` adds what
seglib's `evaluate` gives with its defaults (bf16 autocast where the CPU has it), without TTA
("evaluate_plain") and with `TTA(flip=True, scales=(ratio,))` ("evaluate_flip_scale": the second size
from the original image, averaged at s), with the median seconds of three calls each. Validation only:
the test images are not read.
Prints one line a run and writes the mean Dice of each (docs/experiments/recipe_study.md, "Multi-scale
test-time augmentation").
"""

from __future__ import annotations

import argparse
import glob
import statistics
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from seglib.data.transforms import eval_transform
from seglib.engine import TTA, TrainConfig, evaluate, load_model
from seglib.engine.io import atomic_write_csv
from seglib.engine.loaders import split_dataset
from seglib.engine.runtime import cpu_kind
from seglib.engine.tta import forward_tta, tta_sizes
from seglib.metrics import confusion_counts, dice_from_counts
from seglib.provenance import stamp

SAMPLE = "../shared/data/oxford-pet-sample/oxford-iiit-pet"


def _up(logits: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def _dice(logits: torch.Tensor, mask: torch.Tensor) -> float:
    return float(dice_from_counts(*confusion_counts(logits, mask))[0])


@torch.no_grad()
def score_run(run: Path, root: str, ratio: float, library: bool = False) -> dict:
    cfg = replace(TrainConfig.load(run / "config.json"), data_root=root)
    model = load_model(run / "best.pt").eval()
    ds = split_dataset(cfg, "val")
    s = cfg.image_size
    (s2,) = tta_sizes(s, TTA(scales=(ratio,))) or (s,)  # what evaluate takes; s itself where it rounds back
    sums = dict.fromkeys(("plain", "flip", "flip_original", "flip_tensor", "tensor"), 0.0)
    for i in range(len(ds)):
        image, mask = ds.load_image(i), torch.as_tensor(ds.load_mask(i))[None, None]
        hw = tuple(mask.shape[-2:])
        x = eval_transform(s)(image=image)["image"][None]
        x2 = _up(x, (s2, s2))
        plain, resized = forward_tta(model, x, False), _up(forward_tta(model, x2, False), (s, s))
        one = forward_tta(model, x, True)
        two = forward_tta(model, eval_transform(s2)(image=image)["image"][None], True)
        flip_resized = _up(forward_tta(model, x2, True), (s, s))
        sums["plain"] += _dice(_up(plain, hw), mask)
        sums["flip"] += _dice(_up(one, hw), mask)
        sums["flip_original"] += _dice((_up(one, hw) + _up(two, hw)) / 2, mask)
        sums["flip_tensor"] += _dice(_up((one + flip_resized) / 2, hw), mask)
        sums["tensor"] += _dice(_up((plain + resized) / 2, hw), mask)
    row = {
        "run": f"{run.parent.parent.name}/{run.name}",
        "model": cfg.model,
        "image_size": s,
        "second_size": s2,
    }
    row |= {"epochs": cfg.epochs} | {f"val_dice_{k}": round(v / len(ds), 4) for k, v in sums.items()}
    if library:
        row |= _library_rows(model, ds, ratio)
    return row


def _library_rows(model: torch.nn.Module, ds, ratio: float, rounds: int = 3) -> dict:
    """seglib's `evaluate` without TTA and with flip and the second size: the mean Dice, and the median
    seconds of `rounds` calls each (taken in turn)."""
    ttas = {"plain": False, "flip_scale": TTA(flip=True, scales=(ratio,))}
    seconds: dict[str, list[float]] = {name: [] for name in ttas}
    row = {}
    for _ in range(rounds):
        for name, tta in ttas.items():
            t0 = time.perf_counter()
            df = evaluate(model, ds, device="cpu", progress=False, tta=tta)
            seconds[name].append(time.perf_counter() - t0)
            row[f"val_dice_evaluate_{name}"] = round(float(df.dice.mean()), 4)
    return row | {f"evaluate_{name}_s": round(statistics.median(s), 3) for name, s in seconds.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="globs of run folders, quoted")
    ap.add_argument("--ratio", type=float, default=1.2)
    ap.add_argument("--root", default=SAMPLE)
    ap.add_argument("--csv", default="")
    ap.add_argument("--evaluate", action="store_true", help="also score with seglib's evaluate and TTA")
    args = ap.parse_args()
    facts = stamp() | {"machine": cpu_kind()}
    rows = []
    for run in sorted({Path(p) for pattern in args.runs for p in glob.glob(pattern)}):
        rows.append(facts | score_run(run, args.root, args.ratio, args.evaluate))
        print(rows[-1], flush=True)
    if args.csv and rows:
        atomic_write_csv(pd.DataFrame(rows), args.csv)


if __name__ == "__main__":
    main()

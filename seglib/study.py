"""The recipe study: Dice versus minutes of training, per recipe, at a budget set in minutes.

A run keeps its model every epoch (`checkpoint_every`); each of those models is then scored on a split
at original resolution. Its x coordinate is the training time the run had spent when it was saved
(training and per-epoch validation, as history.csv counts it; not the scoring afterwards). A budget's
Dice is that of the last model saved within the budget: what a user who stops there has.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from .data import OxfordPetDataset
from .engine import RECIPES, TrainConfig, evaluate, fit, load_checkpoint, load_model, summarize

__all__ = [
    "json_or_text",
    "parse_recipes",
    "estimate_epoch_seconds",
    "epochs_for_budget",
    "fit_to_budget",
    "dice_versus_minutes",
    "dice_at_budgets",
]


def json_or_text(text: str) -> Any:
    """A command-line value: JSON where it parses (7, 0.99, true, "x"), else the text itself (unet, 3,6,12)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_recipes(spec: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """ "original,recommended+ema_decay=0+image_size=128" -> {label: (recipe, overrides)}.

    Each comma-separated item is a recipe of `RECIPES`, optionally with `+key=value` changes (values are
    read as JSON where they parse: 0.99, true, "x"; else as text): an ablation is one item per lever.
    """
    known = {f.name for f in fields(TrainConfig)}
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        name, *changes = item.split("+")
        if name not in RECIPES:
            raise ValueError(f"recipes: unknown recipe {name!r} in {item!r}; choose one of {list(RECIPES)}")
        over: dict[str, Any] = {}
        for change in changes:
            key, sep, value = change.partition("=")
            if not sep or key not in known:
                raise ValueError(f"recipes: {change!r} in {item!r} is not key=value with a TrainConfig key")
            over[key] = json_or_text(value)
        out[item] = (name, over)
    if not out:
        raise ValueError(f"recipes: no recipe in {spec!r}; e.g. 'original,recommended'")
    return out


def estimate_epoch_seconds(cfg: TrainConfig, margin: float = 1.15) -> float:
    """Seconds one epoch of `cfg` takes on this machine, with a `margin`: two real epochs are run and
    thrown away, and the second one, timed, counts.

    Everything an epoch of the run does counts: data, augmentation, EMA, validation. The first epoch
    carries one-off costs (allocations, kernel selection) and is left out. A run's epochs come out
    slower than the probe's (it also writes a checkpoint every epoch, whose write-back competes for
    the cores) and vary: on this 2-core machine from 10 to 16.5 s in one run, their mean 10-12% above
    the probe's second epoch, so a 10% margin let a 12-minute run overrun by 1% (README, "Recipe
    study"). Earlier estimates (steps on random tensors, then a single real epoch) were 7-19% short.
    """
    cache_dir = cfg.cache_dir or str(Path(cfg.output_dir).parent / "cache")  # the run's own cache
    with tempfile.TemporaryDirectory(prefix="seglib-probe-") as tmp:
        probe = replace(
            cfg,
            epochs=2,
            checkpoint_every=0,
            output_dir=tmp,
            run_name="probe",
            overwrite=True,
            progress=False,
            use_wandb=False,
            cache_dir=cache_dir,
        )
        return margin * float(fit(probe).history.seconds.iloc[-1])


def epochs_for_budget(cfg: TrainConfig, minutes: float, epoch_seconds: float | None = None) -> int:
    """How many whole epochs of `cfg` fit in `minutes` of training here (at least 1)."""
    if not minutes > 0:
        raise ValueError(f"budget minutes must be positive, got {minutes!r}")
    epoch_seconds = epoch_seconds or estimate_epoch_seconds(cfg)
    return max(1, math.floor(minutes * 60 / epoch_seconds))


def fit_to_budget(
    cfg: TrainConfig,
    minutes: float,
    min_epochs: int = 0,
    sizes: Sequence[int] = (),
    epoch_seconds: dict[int, float] | None = None,
    shrunk: dict[str, Any] | None = None,
) -> TrainConfig:
    """`cfg` with the epochs that fit `minutes` here, at the largest image size that still gives `min_epochs`.

    A schedule fitted to a short budget gets too few steps for its warm-up and decay at the profile's
    size; smaller images buy more epochs. Sizes tried: `cfg.image_size`, then those of `sizes` below it,
    largest first (the smallest if none gives `min_epochs`). A run at a smaller size also takes the
    settings in `shrunk` (e.g. no regularisation: so few steps underfit). `epoch_seconds` maps a size to
    its timed epoch: given ones are used, missing ones timed (`estimate_epoch_seconds`) and added.
    """
    seconds = {} if epoch_seconds is None else epoch_seconds
    candidates = sorted({cfg.image_size, *(s for s in sizes if s < cfg.image_size)}, reverse=True)
    for size in candidates:
        changes = (shrunk or {}) if size < cfg.image_size else {}
        trial = replace(cfg, image_size=size, **changes)
        if size not in seconds:
            seconds[size] = estimate_epoch_seconds(trial)
        fitted = replace(trial, epochs=epochs_for_budget(trial, minutes, seconds[size]))
        if fitted.epochs >= min_epochs:
            break
    return fitted  # the smallest size when none gives min_epochs


def dice_versus_minutes(
    run_dir: str | Path, dataset: OxfordPetDataset, device: str = "auto", tta: bool | None = None
) -> pd.DataFrame:
    """One row per model in `<run_dir>/epochs/`: epoch, train_minutes, val_dice (of the run) and the Dice of
    `dataset` at original resolution (mean, median, min, dataset-level). `tta`: None takes the run's own.
    """
    paths = sorted(Path(run_dir, "epochs").glob("epoch_*.pt"))
    if not paths:
        raise FileNotFoundError(
            f"{Path(run_dir) / 'epochs'} holds no epoch models; train with checkpoint_every=1"
        )
    rows = []
    for path in paths:
        ckpt = load_checkpoint(path)
        use_tta = bool(ckpt["config"].get("tta", False)) if tta is None else tta
        s = summarize(evaluate(load_model(path), dataset, device=device, progress=False, tta=use_tta)).loc[
            "original"
        ]
        rows.append(
            {
                "epoch": ckpt["epoch"],
                "train_minutes": ckpt["train_seconds"] / 60,
                "val_dice": ckpt["val_dice"],
                "dice": s.dice_mean,
                "dice_median": s.dice_median,
                "dice_min": s.dice_min,
                "dice_dataset": s.dice_dataset,
                "tta": use_tta,
            }
        )
    return pd.DataFrame(rows)


def dice_at_budgets(
    curves: dict[str, pd.DataFrame], budgets: list[float], column: str = "dice"
) -> pd.DataFrame:
    """Rows: budgets in minutes; columns: recipes; cells: `column` of the model a user with that budget has.

    A curve with a `budget` column holds one run per budget (a schedule fitted to it): the end of the run
    planned for the budget, if it ended within it. Otherwise (one run, models along it): the last model
    saved within the budget. NaN where there is none: a budget is a budget.
    """
    table = {}
    for name, curve in curves.items():
        cells = []
        for b in budgets:
            rows = curve[curve.budget == b] if "budget" in curve else curve
            rows = rows[rows.train_minutes <= b]
            cells.append(rows[column].iloc[-1] if len(rows) else math.nan)
        table[name] = cells
    return pd.DataFrame(table, index=pd.Index(budgets, name="budget (min)"))

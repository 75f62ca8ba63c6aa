"""The recipe study: Dice versus minutes of training, per recipe, at a budget set in minutes.

A run keeps its model every epoch (`checkpoint_every`); each of those models is then scored on a split
at original resolution. Its x coordinate is the training time the run had spent when it was saved
(training and per-epoch validation, as history.csv counts it; not the scoring afterwards). A budget's
Dice is that of the last model saved within the budget: what a user who stops there has.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .data import OxfordPetDataset
from .engine import (
    RECIPES,
    ModelEMA,
    TrainConfig,
    evaluate,
    load_checkpoint,
    load_model,
    make_datasets,
    summarize,
)
from .engine.losses import bce_loss, soft_dice_loss
from .engine.runtime import prepare_model, resolve_device
from .models import build_model

__all__ = [
    "parse_recipes",
    "estimate_epoch_seconds",
    "epochs_for_budget",
    "dice_versus_minutes",
    "dice_at_budgets",
]


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
            try:
                over[key] = json.loads(value)
            except json.JSONDecodeError:
                over[key] = value
        out[item] = (name, over)
    if not out:
        raise ValueError(f"recipes: no recipe in {spec!r}; e.g. 'original,recommended'")
    return out


def estimate_epoch_seconds(cfg: TrainConfig, steps: int = 3) -> float:
    """Seconds one epoch of `cfg` takes on this machine, from `steps` timed training steps (after one warm-up).

    Random tensors of the run's batch and image size stand in for the data: on a CPU the model, not the
    data path, sets the pace (the data path is over 50x faster than the step). Validation counts as a
    third of a training step per image (forward only).
    """
    device = resolve_device(cfg.device)
    train, val, _ = make_datasets(cfg)
    torch.manual_seed(cfg.seed)
    model = prepare_model(build_model(cfg.model, **cfg.model_kwargs), device, cfg.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    b, s = cfg.batch_size, cfg.image_size
    x = torch.randn(b, 3, s, s, device=device)
    x = x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x
    y = (torch.rand(b, 1, s, s, device=device) > 0.5).float()
    ema = ModelEMA(model, cfg.ema_decay) if cfg.ema_decay else None
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        logits = model(x)
        loss = bce_loss(logits, y) + (soft_dice_loss(logits, y) if cfg.loss == "bce_dice" else 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update(model)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    per_image = sorted(times[1:])[len(times[1:]) // 2] / b
    val_cost = (2 if cfg.tta else 1) / 3
    return per_image * (len(train) + val_cost * len(val))


def epochs_for_budget(cfg: TrainConfig, minutes: float, epoch_seconds: float | None = None) -> int:
    """How many whole epochs of `cfg` fit in `minutes` of training here (at least 1)."""
    if not minutes > 0:
        raise ValueError(f"budget minutes must be positive, got {minutes!r}")
    epoch_seconds = epoch_seconds or estimate_epoch_seconds(cfg)
    return max(1, math.floor(minutes * 60 / epoch_seconds))


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
        rows.append({"epoch": ckpt["epoch"], "train_minutes": ckpt["train_seconds"] / 60, "val_dice": ckpt["val_dice"],
                     "dice": s.dice_mean, "dice_median": s.dice_median, "dice_min": s.dice_min,
                     "dice_dataset": s.dice_dataset, "tta": use_tta})  # fmt: skip
    return pd.DataFrame(rows)


def dice_at_budgets(
    curves: dict[str, pd.DataFrame], budgets: list[float], column: str = "dice"
) -> pd.DataFrame:
    """Rows: budgets in minutes; columns: recipes; cells: `column` of the model a user with that budget has.

    A curve with a `budget` column holds one run per budget (a schedule fitted to it): its row for the
    budget. Otherwise (one run, checkpoints along it): the last model saved within the budget. NaN where
    there is none.
    """
    table = {}
    for name, curve in curves.items():
        cells = []
        for b in budgets:
            rows = curve[curve.budget == b] if "budget" in curve else curve[curve.train_minutes <= b]
            cells.append(rows[column].iloc[-1] if len(rows) else math.nan)
        table[name] = cells
    return pd.DataFrame(table, index=pd.Index(budgets, name="budget (min)"))

"""The recipe study's measures: Dice against minutes of training, read from the models a run kept, and the
model a user with a given budget has.

A run keeps its model every epoch (`checkpoint_every`); each of those models is then scored on a split
at original resolution. Its x coordinate is the training time the run had spent when it was saved
(training and per-epoch validation, as history.csv counts it; not the scoring afterwards). A budget's
Dice is that of the last model saved within the budget: what a user who stops there has.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..data import OxfordPetDataset
from ..engine import evaluate, load_checkpoint, load_model, summarize
from ..engine.progress import progress_bar

__all__ = ["dice_versus_minutes", "dice_at_budgets", "model_at_budget", "budget_reading"]


def dice_versus_minutes(
    run_dir: str | Path,
    dataset: OxfordPetDataset,
    device: str = "auto",
    tta: bool | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per model in `<run_dir>/epochs/`: epoch, train_minutes, val_dice (of the run) and the Dice of
    `dataset` at original resolution (mean, median, min, dataset-level). `tta`: None takes the run's own.
    `progress`: a bar over the models scored.
    """
    paths = sorted(Path(run_dir, "epochs").glob("epoch_*.pt"))
    if not paths:
        raise FileNotFoundError(
            f"{Path(run_dir) / 'epochs'} holds no epoch models; train with checkpoint_every=1"
        )
    rows = []
    for path in progress_bar(paths, desc=f"scoring {Path(run_dir).name}", disable=not progress):
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

    A curve with a `budget` column holds one run per budget (a schedule fitted to it): the run's reading
    for its budget (`budget_reading`), if it lies within it. Otherwise (one run, models along it): the last model
    saved within the budget. NaN where there is none: a budget is a budget.
    """
    table = {}
    for name, curve in curves.items():
        rows = [model_at_budget(curve, b) for b in budgets]
        table[name] = [math.nan if row is None else row[column] for row in rows]
    return pd.DataFrame(table, index=pd.Index(budgets, name="budget (min)"))


def model_at_budget(curve: pd.DataFrame, budget: float) -> pd.Series | None:
    """The row of `curve` a user with `budget` minutes has (`dice_at_budgets`' rule): the budget's own run
    where the curve has a run per budget (a `budget` column), else the last model along the one run;
    in either, the last saved within the budget. None where there is none."""
    if "budget" in curve and curve.budget.notna().any():
        curve = curve[curve.budget == budget]
    within = curve[curve.train_minutes <= budget]
    return within.iloc[-1] if len(within) else None


def budget_reading(curve: pd.DataFrame, budget: float) -> pd.DataFrame:
    """The row of `curve` (one run planned for `budget` minutes, a row per kept model) that a user with the
    budget has: its last model saved within the budget. A run can come out slower than its probe and end
    past its budget; a model it kept before then still counts. With none kept in time, its last model
    (which `dice_at_budgets` then leaves out). One row, with a `budget` column."""
    within = curve[curve.train_minutes <= budget]
    return (within if len(within) else curve).iloc[[-1]].assign(budget=budget)

"""The recipe study's measures: Dice against minutes of training, read from the models a run kept, and the
model a user with a given budget has.

A run keeps its model every epoch (`checkpoint_every`); each of those models is then scored on a split
at original resolution. Its x coordinate is the training time the run had spent when it was saved
(training and per-epoch validation, as history.csv counts it; not the scoring afterwards). A budget's
Dice is that of the last model saved within the budget: what a user who stops there has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..data import OxfordPetDataset
from ..engine import checkpoint_threshold, evaluate, load_checkpoint, load_model, summarize
from ..engine.progress import progress_bar

__all__ = [
    "dice_versus_minutes",
    "score_kept_models",
    "epoch_column",
    "dice_at_budgets",
    "model_at_budget",
    "budget_reading",
    "StudyCurves",
    "study_curves",
    "models_at_budget",
]


def dice_versus_minutes(run_dir: str | Path, dataset: OxfordPetDataset, **options: Any) -> pd.DataFrame:
    """`score_kept_models`' curve alone: one row per kept model (`options`: its device, tta, threshold)."""
    return score_kept_models(run_dir, dataset, **options)[0]


def score_kept_models(
    run_dir: str | Path,
    dataset: OxfordPetDataset,
    device: str = "auto",
    tta: bool | None = None,
    progress: bool = True,
    threshold: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every model in `<run_dir>/epochs/` scored on `dataset` at original resolution: (curve, per image).

    The curve: a row per model, its epoch, train_minutes, val_dice (of the run) and the Dice of `dataset`
    (mean, median, min, dataset-level). Per image: a row per image (its `name`), a column per model
    (`epoch_column`), for paired comparisons. `tta` and `threshold`: None takes the run's own (as its
    val_dice was scored). `progress`: a bar over the models scored.
    """
    paths = sorted(Path(run_dir, "epochs").glob("epoch_*.pt"))
    if not paths:
        raise FileNotFoundError(
            f"{Path(run_dir) / 'epochs'} holds no epoch models; train with checkpoint_every=1"
        )
    rows, images = [], None
    for path in progress_bar(paths, desc=f"scoring {Path(run_dir).name}", disable=not progress):
        ckpt = load_checkpoint(path)
        use_tta = bool(ckpt["config"].get("tta", False)) if tta is None else tta
        cut = checkpoint_threshold(ckpt) if threshold is None else threshold
        model = load_model(path, checkpoint=ckpt)
        scores = evaluate(model, dataset, device=device, progress=False, tta=use_tta, threshold=cut)
        s = summarize(scores).loc["original"]
        column = scores.set_index("name").dice.rename(epoch_column(ckpt["epoch"]))
        images = column.to_frame() if images is None else images.join(column)
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
                "threshold": cut,
            }
        )
    assert images is not None  # `paths` is not empty: the loop joined a column at least once
    return pd.DataFrame(rows), images.reset_index()


def epoch_column(epoch: int) -> str:
    """The column of `score_kept_models`' per-image table that holds the model of `epoch`."""
    return f"epoch_{int(epoch)}"


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


@dataclass
class StudyCurves:
    """Notebook 06's curves, from its runs (`study_curves`)."""

    curves: dict[str, pd.DataFrame]  # recipe item -> its curve: a run read along, or a row per budget's run
    anytime: dict[str, pd.DataFrame]  # "<item>: the <b>-min run, stopped early" -> the longest run's models
    marks: list[float]  # the budgets read (fixed epochs: one, where the longest run ended)
    budget: float  # the longest
    fixed_epochs: bool = False  # no budgets: `marks` is where the longest run ended

    @property
    def marks_label(self) -> str:
        """What the dotted lines of `plot_dice_versus_minutes` are."""
        return "where the longest run ended (fixed epochs)" if self.fixed_epochs else "training budgets"


def study_curves(runs: Sequence[Any], marks: Sequence[float], budget: float | None) -> StudyCurves:
    """The curves of notebook 06's `runs` (each with `label`, `budget` and a scored `curve`:
    `run_recipe_job`). A run read along (budget None) is its item's curve; a run per budget gives its
    item's curve its reading (`budget_reading`), and the longest budget's run, with more than one model
    kept, its own dashed curve. Fixed epochs (`budget` None): read where the longest run ended."""
    curves: dict[str, pd.DataFrame] = {}
    anytime: dict[str, pd.DataFrame] = {}
    for run in runs:
        if run.budget is None:  # one run: its curve is the recipe's
            curves[run.label] = run.curve
            continue
        end = budget_reading(run.curve, run.budget)  # its last model within the budget
        curves[run.label] = pd.concat([curves.get(run.label), end], ignore_index=True)
        if run.budget == budget and len(run.curve) > 1:
            anytime[f"{run.label}: the {run.budget:g}-min run, stopped early"] = run.curve
    marks, fixed = list(marks), budget is None
    if budget is None:  # fixed epochs: read the curves where the longest run ended
        budget = round(max(c.train_minutes.max() for c in curves.values()) + 0.005, 2)
        marks = [budget]
    return StudyCurves(curves, anytime, marks, budget, fixed)


NONE_WITHIN = "none within budget"  # `models_at_budget`'s note for a recipe with no model in time


def models_at_budget(curves: dict[str, pd.DataFrame], budget: float) -> pd.DataFrame:
    """Notebook 06's "the N-minute models": per recipe, the model a user with `budget` minutes has
    (`model_at_budget`, the budget table's rule): its epochs (whole), minutes and Dice. A recipe with no
    model saved within the budget gets an empty row, noted "none within budget"."""
    rows = {}
    for label, curve in curves.items():
        row = model_at_budget(curve, budget)
        if row is None:
            rows[label] = {"epochs": pd.NA, "note": NONE_WITHIN}
        else:
            rows[label] = {"epochs": int(row.epoch), "note": ""} | {
                name: getattr(row, column) for name, column in BUDGET_MODEL_COLUMNS.items()
            }
    columns = ["epochs", *BUDGET_MODEL_COLUMNS, "note"]
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns)
    table = table.astype({"epochs": "Int64", **dict.fromkeys(BUDGET_MODEL_COLUMNS, float)})
    return table if (table.note != "").any() else table.drop(columns="note")


# The N-minute models' columns (beside epochs and the note) and the curve's columns they show
BUDGET_MODEL_COLUMNS = {
    "train minutes": "train_minutes",
    "test Dice": "dice",
    "test Dice median": "dice_median",
    "test Dice min": "dice_min",
    "dataset-level Dice": "dice_dataset",
    "val Dice": "val_dice",
}

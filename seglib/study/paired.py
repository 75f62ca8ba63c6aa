"""How sure the recipe study's "ahead" is: each budget's models compared on the same test images.

A study's table gives, per budget, the mean test Dice of the model a user with that budget has
(`dice_at_budgets`). Two recipes' means differ by their models and by which images the test split holds;
`paired_at_budgets` takes the two models' Dice image by image (`paired_difference`: a paired bootstrap
over the test images) and says where the difference is more than the draw of those images explains.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..engine.intervals import LEVEL, paired_difference
from .curves import epoch_column, model_at_budget

__all__ = ["PAIRED_COLUMNS", "paired_at_budgets", "describe_paired"]

PAIRED_COLUMNS = ["budget (min)", "recipe", "against", "gap", "low", "high", "images", "higher", "lower"]


def _budget_model(runs: Sequence[Any], label: str, budget: float) -> pd.Series | None:
    """The per-image Dice (indexed by image name) of the model of `label` a user with `budget` minutes has:
    `dice_at_budgets`' rule (the budget's own run, else the last model within it along the one run).
    None where there is none, or the run did not keep its Dice per image."""
    own = [r for r in runs if r.label == label and r.budget is not None]
    candidates = [r for r in own if r.budget == budget] if own else [r for r in runs if r.label == label]
    for run in candidates:
        row = model_at_budget(run.curve, budget)
        images = getattr(run, "image_dice", None)
        if row is None or images is None or epoch_column(row.epoch) not in images:
            continue
        return images.set_index("name")[epoch_column(row.epoch)]
    return None


def paired_at_budgets(
    runs: Sequence[Any], budgets: Sequence[float], base: str, level: float = LEVEL
) -> pd.DataFrame:
    """Per budget and recipe item other than `base`: its model's test Dice minus `base`'s, over the same
    test images (`gap`), with the paired bootstrap interval (`low`, `high`) and the images where each is
    higher. `runs`: notebook 06's (`run_recipe_job`). Budgets where either has no model are left out."""
    rows = []
    labels = list(dict.fromkeys(r.label for r in runs if r.label != base))
    for budget in budgets:
        a = _budget_model(runs, base, budget)
        for label in labels:
            b = _budget_model(runs, label, budget)
            if a is None or b is None:
                continue
            d = paired_difference(a.rename("dice").reset_index(), b.rename("dice").reset_index(), level=level)
            rows.append([budget, label, base, d.mean, d.low, d.high, d.images, d.b_higher, d.a_higher])
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def describe_paired(paired: pd.DataFrame, name: str, base: str, level: float = LEVEL) -> str | None:
    """One line: at how many budgets the interval of `name` minus `base` lies above 0, below 0, or holds
    it (the budgets named). None where `paired` holds no such comparison."""
    rows = paired[(paired.recipe == name) & (paired.against == base)]
    if rows.empty:
        return None
    above, below = rows[rows.low > 0], rows[rows.high < 0]
    unresolved = rows[(rows.low <= 0) & (rows.high >= 0)]
    images = int(rows.images.iloc[0])
    text = (
        f"`{name}` against `{base}`, image by image ({level:.0%} paired interval over the same {images} "
        f"test images): higher at {len(above)}, lower at {len(below)} of {len(rows)} budgets"
    )
    if unresolved.empty:
        return text + "."
    listed = ", ".join(
        f"{r['budget (min)']:g} min ({r.gap:+.4f}, {r.low:+.4f} to {r.high:+.4f})"
        for _, r in unresolved.iterrows()
    )
    return f"{text}; these images do not tell them apart at {listed}."

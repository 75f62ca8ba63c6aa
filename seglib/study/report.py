"""What the studies' summaries say: who leads, and by how much, with ties said as ties.

Two scores are level where they print alike at 4 decimals (`DECIMALS`), as the notebooks' tables show
them: a lead of +0.0000 is no lead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from .paired import describe_paired

__all__ = [
    "DECIMALS",
    "level",
    "leaders",
    "names",
    "head_to_head",
    "describe_head_to_head",
    "recipe_summary",
]

DECIMALS = 4  # the tables' and summaries' decimals: scores equal to these are level
LEARNED = 0.5  # a best test Dice below this: the runs learned too little for their order to mean much


def level(a: float, b: float) -> bool:
    """`a` and `b` print alike at `DECIMALS` decimals."""
    return f"{a:.{DECIMALS}f}" == f"{b:.{DECIMALS}f}"


def leaders(scores: pd.Series) -> list[str]:
    """The names (index) of `scores` level with its maximum, in their order (NaN left out; [] if none)."""
    scores = scores.dropna()
    if scores.empty:
        return []
    top = scores.max()
    return [str(name) for name, v in scores.items() if level(v, top)]


def names(items: list[str], bold: bool = False) -> str:
    """ "`a`", "`a` and `b`", "`a`, `b` and `c`" (bold: **a** ...)."""
    marked = [f"**{x}**" if bold else f"`{x}`" for x in items]
    return marked[0] if len(marked) == 1 else ", ".join(marked[:-1]) + " and " + marked[-1]


def head_to_head(other: pd.Series, base: pd.Series) -> dict[str, float | int] | None:
    """`other` against `base` where both have a score: how often it is ahead, level and behind (`level`),
    of how many, and the gap's range (other - base). None where they share no score."""
    both = pd.concat([other, base], axis=1, keys=["other", "base"]).dropna()
    if both.empty:
        return None
    ties = [level(o, b) for o, b in zip(both.other, both.base, strict=True)]
    gap = both.other - both.base
    ahead = sum(1 for t, g in zip(ties, gap, strict=True) if not t and g > 0)
    behind = sum(1 for t, g in zip(ties, gap, strict=True) if not t and g < 0)
    return {
        "ahead": ahead,
        "level": sum(ties),
        "behind": behind,
        "of": len(both),
        "min": float(gap.min()),
        "max": float(gap.max()),
    }


def signed(gap: float) -> str:
    """A gap with its sign, "+0.0123", "-0.0100"; a level one (0 to `DECIMALS` decimals) "0.0000"."""
    text = f"{gap:+.{DECIMALS}f}"
    return text[1:] if float(text) == 0 else text


def describe_head_to_head(name: str, base: str, h: dict[str, float | int], unit: str = "budgets") -> str:
    """One line: "`b` against `a`: ahead at 2, level at 1, behind at 0 of 3 budgets (gap -0.0001 to +0.0123)"."""
    unit = unit if h["of"] != 1 else unit.removesuffix("s")  # "of 1 budget"
    counts = f"ahead at {h['ahead']}, level at {h['level']}, behind at {h['behind']} of {h['of']} {unit}"
    if h["level"] == h["of"]:
        return f"`{name}` against `{base}`: {counts} (level: equal to {DECIMALS} decimals)."
    lo, hi = (signed(h[k]) for k in ("min", "max"))
    span = lo if lo == hi else f"{lo} to {hi}"
    return f"`{name}` against `{base}`: {counts} (Dice gap {span})."


def recipe_summary(
    table: pd.DataFrame,
    minutes: pd.DataFrame,
    recipes: Sequence[str],
    runs: Sequence[Any],
    machine: str,
    paired: pd.DataFrame | None = None,
) -> list[str]:
    """Notebook 06's closing lines (markdown items): what each run trained, each recipe of `recipes` (the
    columns of `table`, `dice_at_budgets`: budgets x recipes and other curves) against the first (ahead,
    level, behind), those with no model within a budget, and the best within the longest budget (level
    ones: a tie).
    `minutes`: the same table of the models' minutes of training; `paired` (`paired_at_budgets`): each
    comparison with the first also image by image, with where its interval holds 0."""
    bought = "; ".join(  # what each run trained: its epochs re-planned under the budget
        f"`{r.label}` {f'{r.budget:g} min' if r.budget is not None else 'one run'}: {len(r.history)} epochs at "
        f"{r.config.image_size} px in {r.history.seconds.sum() / 60:.1f} min"
        + (" (trained before, reused)" if getattr(r, "reused", False) else "")
        for r in runs
    )
    lines = [f"- On {machine} the runs trained: {bought}."]
    # a recipe's long run read at a shorter budget (a column too) is no recipe of its own
    base, *others = [c for c in table.columns if c in recipes]
    for other in others:
        h = head_to_head(table[other], table[base])
        if h is not None:
            lines.append(f"- {describe_head_to_head(other, base, h)}")
        said = None if paired is None else describe_paired(paired, other, base)
        if said:
            lines.append(f"- {said}")
    for label in recipes:
        missed = [b for b, v in table[label].items() if pd.isna(v)]
        if missed:
            listed = names([f"{b:g}" for b in missed]).replace("`", "")
            lines.append(
                f"- `{label}` has no model saved within {listed} minutes (its runs ended, or kept their "
                "first model, past the budget): no reading there."
            )
    budget, last = table.index[-1], table.iloc[-1][[base, *others]].dropna()
    top = leaders(last)
    if len(top) == 1:
        best = top[0]
        lines.append(
            f"- Within {budget:g} minutes the best is `{best}`: test Dice **{last[best]:.{DECIMALS}f}** after "
            f"{minutes.iloc[-1][best]:.1f} minutes of training."
        )
    elif top:
        lines.append(
            f"- Within {budget:g} minutes {names(top)} tie for the best test Dice, "
            f"**{last.max():.{DECIMALS}f}** (level: equal to {DECIMALS} decimals)."
        )
    if top and last.max() < LEARNED:  # e.g. a busy machine: each budget bought an epoch or two
        epochs = sorted({len(r.history) for r in runs})
        bought = f"{epochs[0]}" if len(epochs) == 1 else f"{epochs[0]} to {epochs[-1]}"
        lines.append(
            f"- **No model reaches test Dice {LEARNED}** (the runs trained {bought} epochs): they learned too "
            "little for this order to mean much. Longer `budgets` buy more epochs, and so does a CPU that "
            "other programs leave to this one (each epoch's seconds are in its run's history.csv)."
        )
    return lines

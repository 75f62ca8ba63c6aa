"""How sure a mean Dice is: bootstrap intervals over the test images.

A mean over a hundred test images would move if other images of the same breeds were drawn, often by
more than two models (or recipes) scored on those images differ. `mean_interval`
gives the interval of one mean; `paired_difference` that of the difference of two models scored on the
same images, resampling the images jointly (each image's pair of scores stays together, which removes the
images' shared difficulty from the comparison). Percentile bootstrap, seeded: the same table gives the
same interval. Only the test images' draw is covered, not the training's (seeds) nor other breeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["LEVEL", "RESAMPLES", "Difference", "mean_interval", "paired_difference"]

LEVEL = 0.95
RESAMPLES = 10_000
_CHUNK = 500  # resamples drawn at once: 500 x 3,669 full-test indices stay under 15 MB


def _resampled_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The means of `resamples` draws of len(values) values with replacement."""
    rng = np.random.default_rng(seed)
    n, means = len(values), []
    for start in range(0, resamples, _CHUNK):
        idx = rng.integers(0, n, size=(min(_CHUNK, resamples - start), n))
        means.append(values[idx].mean(axis=1))
    return np.concatenate(means)


def _interval(values: np.ndarray, level: float, resamples: int, seed: int) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level={level!r}; give a probability in (0, 1), e.g. 0.95")
    if len(values) == 0:
        raise ValueError("no values: an interval needs at least one scored image")
    if np.isnan(values).any():
        raise ValueError("the scores hold NaN; score every image (evaluate's table has none)")
    means = _resampled_means(values, resamples, seed)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def mean_interval(
    values: pd.Series | np.ndarray, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """The `level` bootstrap interval of the mean of `values` (e.g. the per-image Dice of `evaluate`)."""
    return _interval(np.asarray(values, dtype=np.float64), level, resamples, seed)


@dataclass(frozen=True)
class Difference:
    """`b` minus `a` over the same images: the mean difference and its interval, and how many images
    each scores higher on."""

    mean: float
    low: float
    high: float
    level: float
    images: int
    b_higher: int
    a_higher: int

    def sentence(self, a: str, b: str, column: str = "Dice") -> str:
        """The comparison in words: which is higher where the interval excludes 0, else that the images
        do not tell them apart."""
        span = f"{self.mean:+.4f} ({self.level:.0%} interval {self.low:+.4f} to {self.high:+.4f})"
        where = f"over the same {self.images} images ({b} higher on {self.b_higher}, {a} on {self.a_higher})"
        if self.low > 0 or self.high < 0:
            better, worse = (b, a) if self.low > 0 else (a, b)
            return f"{b} minus {a}, mean {column}: {span} {where}: **{better}** is better than {worse}."
        return (
            f"{b} minus {a}, mean {column}: {span} {where}: the interval holds 0, so these images do not "
            "tell the two apart."
        )


def paired_difference(
    a: pd.DataFrame,
    b: pd.DataFrame,
    column: str = "dice",
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Difference:
    """`b[column]` minus `a[column]` over the images both tables scored (matched by `name`): the mean,
    its paired bootstrap interval, and the images where each is higher. Two tables of other images are
    refused: their means differ by their images as much as by their models."""
    for label, df in (("a", a), ("b", b)):
        missing = {"name", column} - set(df.columns)
        if missing:
            raise ValueError(
                f"table {label} has no column {sorted(missing)}; give evaluate()'s per-image tables"
            )
        if df["name"].duplicated().any():
            raise ValueError(f"table {label} scores an image twice; give one model's table, not several")
    only_a, only_b = set(a["name"]) - set(b["name"]), set(b["name"]) - set(a["name"])
    if only_a or only_b:
        raise ValueError(
            f"the tables score different images ({len(only_a)} only in a, {len(only_b)} only in b, e.g. "
            f"{sorted(only_a | only_b)[0]!r}); score both models on the same split and limit"
        )
    joined = a.set_index("name")[column].to_frame("a").join(b.set_index("name")[column].rename("b"))
    diff = (joined["b"] - joined["a"]).to_numpy(dtype=np.float64)
    low, high = _interval(diff, level, resamples, seed)
    return Difference(
        mean=float(diff.mean()),
        low=low,
        high=high,
        level=level,
        images=len(diff),
        b_higher=int((diff > 0).sum()),
        a_higher=int((diff < 0).sum()),
    )

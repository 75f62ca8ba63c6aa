"""Bootstrap intervals of a mean Dice, and of two models' paired difference."""

import numpy as np
import pandas as pd
import pytest

from seglib.engine import mean_interval, paired_difference


def table(dice, names=None) -> pd.DataFrame:
    names = names if names is not None else [f"img{i}" for i in range(len(dice))]
    return pd.DataFrame({"name": names, "dice": dice})


def test_the_interval_of_a_mean_matches_the_normal_one_and_is_seeded():
    values = np.random.default_rng(1).uniform(0.5, 1.0, 400)
    low, high = mean_interval(values)
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))  # the textbook interval for n this large
    assert low < values.mean() < high
    assert (high - low) / 2 == pytest.approx(half, rel=0.05)
    assert mean_interval(values) == (low, high)  # seeded: the same table, the same interval
    assert mean_interval(np.full(30, 0.8)) == pytest.approx((0.8, 0.8))
    assert mean_interval([0.0, 1.0]) == (0.0, 1.0)  # every image drawn: a quarter of the means are 1
    assert mean_interval(values, level=0.5)[1] - mean_interval(values, level=0.5)[0] < high - low


def test_the_pairing_separates_models_whose_means_overlap():
    """Images differ far more from each other than the two models do: each mean's interval overlaps
    the other's, yet b is higher on the same images, which the paired interval shows."""
    rng = np.random.default_rng(0)
    hard = rng.uniform(0.3, 1.0, 100)  # each image's difficulty, shared by both models
    a = table(hard)
    b = table(np.clip(hard + 0.02 + rng.normal(0, 0.01, 100), 0, 1))
    a_high, b_low = mean_interval(a.dice)[1], mean_interval(b.dice)[0]
    assert b_low < a_high  # the two means alone do not tell them apart
    diff = paired_difference(a, b)
    assert diff.low > 0 and diff.mean == pytest.approx((b.dice - a.dice).mean())
    assert diff.images == 100 and diff.b_higher + diff.a_higher <= 100 and diff.b_higher > 90
    assert "**b** is better than a" in diff.sentence("a", "b")
    flipped = paired_difference(b, a)
    assert flipped.high < 0 and "**b** is better than a" in flipped.sentence("b", "a")


def test_images_that_do_not_tell_the_models_apart_are_said_so():
    rng = np.random.default_rng(3)
    a = table(rng.uniform(0.6, 1.0, 50))
    b = table(a.dice + rng.normal(0, 0.05, 50))  # noise around no difference
    diff = paired_difference(a, b)
    assert diff.low < 0 < diff.high
    assert "the interval holds 0, so these images do not tell the two apart" in diff.sentence("a", "b")


def test_the_images_are_matched_by_name_not_by_row():
    a = table([0.9, 0.5, 0.7], ["x", "y", "z"])
    b = table([0.75, 0.95, 0.55], ["z", "x", "y"])  # each image 0.05 higher, rows in another order
    diff = paired_difference(a, b)
    assert (diff.mean, diff.low, diff.high) == pytest.approx((0.05, 0.05, 0.05))
    assert (diff.b_higher, diff.a_higher) == (3, 0)
    tied = paired_difference(
        table([0.9, 0.5, 0.7, 0.6], [*"xyz", "w"]), table([0.75, 0.95, 0.55, 0.6], [*"zxy", "w"])
    )
    assert (tied.images, tied.b_higher, tied.a_higher) == (4, 3, 0)  # a tie is neither higher


def test_tables_of_other_images_or_repeated_images_are_refused():
    a = table([0.9, 0.5], ["x", "y"])
    with pytest.raises(ValueError, match=r"different images \(1 only in a, 1 only in b, e.g. 'w'\)"):
        paired_difference(a, table([0.9, 0.5], ["w", "y"]))
    with pytest.raises(ValueError, match="table b scores an image twice"):
        paired_difference(a, table([0.9, 0.5, 0.4], ["x", "y", "y"]))
    with pytest.raises(ValueError, match=r"table a has no column \['dice'\]"):
        paired_difference(a.rename(columns={"dice": "iou"}), a)
    with pytest.raises(ValueError, match="NaN"):
        mean_interval([0.5, float("nan")])
    with pytest.raises(ValueError, match="level=1.5"):
        mean_interval([0.5, 0.6], level=1.5)

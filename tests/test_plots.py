"""The workbook's figures: what they say about a run."""

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from seglib.engine.losses import LOSSES
from seglib.plots import LOSS_TITLES, plot_history

HISTORY = pd.DataFrame(
    {
        "epoch": [1, 2],
        "train_loss": [0.7, 0.5],
        "val_loss": [0.6, 0.55],
        "train_dice": [0.5, 0.7],
        "val_dice": [0.55, 0.65],
        "lr": [1e-3, 5e-4],
    }
)


@pytest.mark.parametrize(
    ("loss", "title"), [("bce", "loss: BCE"), ("bce_dice", "loss: BCE + soft Dice"), (None, "loss")]
)
def test_history_names_the_runs_loss(loss, title):
    fig = plot_history(HISTORY, loss)
    assert fig.axes[0].get_title() == title  # not "BCE loss" for a run trained on BCE + Dice
    plt.close(fig)


def test_every_loss_has_a_title():
    assert set(LOSS_TITLES) == set(LOSSES)

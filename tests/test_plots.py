"""The workbook's figures: what they say about a run."""

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import same_color
from matplotlib.contour import ContourSet

from seglib.data import OxfordPetDataset, eval_transform, train_transform
from seglib.engine.evaluate import predict_logits
from seglib.engine.losses import LOSSES
from seglib.metrics import dice_per_image
from seglib.models import build_model
from seglib.plots import (
    DISPLAY_SIDE,
    LOSS_TITLES,
    OUTLINE_COLOUR,
    error_map,
    for_display,
    plot_augmentations,
    plot_border_band,
    plot_dice_distribution,
    plot_dice_versus_minutes,
    plot_history,
    plot_lr_curves,
    plot_metric_by_run,
    plot_model_comparison,
    plot_overlay_grid,
    plot_prediction,
    plot_prediction_grid,
    plot_sizes_and_foreground,
)

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


def test_image_panels_have_no_ticks_to_lay_out():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)
    truth, pred = rng.integers(0, 2, (2, 150, 200), dtype=np.uint8)
    fig = plot_prediction(image, truth, pred, title="Abyssinian_1", dice=0.5)
    assert [ax.get_title() for ax in fig.axes] == [
        "image",
        "ground truth",
        "prediction (Dice 0.500)",
        "errors: FP red, FN blue",
    ]
    plt.close(fig)
    fig = plot_prediction(image, truth, pred, dice=0.5, precision="fp32")
    assert fig.axes[2].get_title() == "prediction (Dice 0.500, fp32)"
    for ax in fig.axes:  # hidden and empty: matplotlib has no tick labels to measure when it draws
        assert not ax.axison and len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0
    plt.close(fig)


def test_one_draw_and_no_images_are_said_plainly(synthetic_root):
    """n=1 gave "'Axes' object is not iterable"; zero images matplotlib's "Number of rows must be ..."."""
    ds = OxfordPetDataset(synthetic_root, "train")
    fig = plot_augmentations(ds, 0, train_transform(64), n=1)
    assert [ax.get_title() for ax in fig.axes] == ["draw 0"]
    plt.close(fig)
    for draw in (
        lambda: plot_overlay_grid(ds, []),
        lambda: plot_augmentations(ds, 0, eval_transform(64), n=0),
    ):
        with pytest.raises(ValueError, match=r"no images to show; ask for at least one"):
            draw()
    scored = pd.DataFrame({"model": ["unet", "unet"], "dice": [0.8, 0.9]})
    plt.close(plot_model_comparison(scored))
    with pytest.raises(ValueError, match=r"plot_model_comparison: no dice to show"):  # seaborn: NoneType ...
        plot_model_comparison(scored.iloc[:0])


def test_the_zoom_on_the_border_band_shows_the_band(synthetic_root):
    """It was centred on the band's median row and column, which for a band around the pet lie inside
    the pet: the zoom showed pet only (77 of the real sample's 300 trainval images)."""
    ds = OxfordPetDataset(synthetic_root, "train")
    for i in range(6):
        fig = plot_border_band(ds, i)
        zoom = fig.axes[2].images[0].get_array()
        assert (np.asarray(zoom) == 3).any(), ds.names[i]
        plt.close(fig)


def test_the_lr_curves_number_epochs_from_1_and_jump_where_the_lr_does():
    """Epochs ran from 0 (the tables number them from 1), and a step schedule's jump was drawn as a ramp."""
    fig = plot_lr_curves({"step": [1e-3] * 4 + [1e-4] * 4}, steps_per_epoch=4)
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_xdata()) == [1, 1.25, 1.5, 1.75, 2, 2.25, 2.5, 2.75]
    assert line.get_drawstyle() == "steps-post"
    plt.close(fig)


def test_prediction_grid_says_its_dice_is_fp32(synthetic_root):
    """Its Dice comes from predict_logits (fp32); notebook 04's table beside it can be scored in bf16
    autocast and differ in the third decimal, so the figure says which it shows."""
    ds = OxfordPetDataset(synthetic_root, "test")
    torch.manual_seed(0)
    model = build_model("unet", base_channels=4).eval()
    fig = plot_prediction_grid(model, ds, [0], 64, device="cpu")
    logits = predict_logits(model, ds.load_image(0), 64, "cpu")
    dice = dice_per_image(logits[None], torch.from_numpy(ds.load_mask(0))[None], 0.5).item()
    assert fig.axes[2].get_title() == f"prediction, Dice {dice:.3f} (fp32)"
    plt.close(fig)


def test_error_map_colours_each_kind_of_pixel():
    truth = np.array([[1, 1, 0, 0, 255, 255]], np.uint8)
    pred = np.array([[1, 0, 1, 0, 1, 0]], np.uint8)
    want = [(255, 255, 255), (0, 114, 178), (204, 51, 17), (0, 0, 0), (128, 128, 128), (128, 128, 128)]
    assert error_map(truth, pred)[0].tolist() == [list(c) for c in want]  # TP, FN, FP, TN, ignored twice


def test_history_ticks_whole_epochs():
    """Two epochs got ticks at 1.2, 1.4, ...: epochs that never were."""
    fig = plot_history(HISTORY)
    fig.canvas.draw()
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels() if 1 <= t.get_position()[0] <= 2] == ["1", "2"]
    plt.close(fig)


def test_history_draws_a_loss_spike_on_a_log_axis():
    """One diverging validation epoch (23 beside losses under 1) flattened every other epoch of the loss
    panel into its bottom line."""
    fig = plot_history(HISTORY)
    assert fig.axes[0].get_yscale() == "linear"  # an ordinary run keeps its linear loss axis
    plt.close(fig)
    spiked = pd.concat([HISTORY] * 3, ignore_index=True).assign(epoch=range(1, 7))
    spiked.loc[2, "val_loss"] = 23.0
    fig = plot_history(spiked, "bce")
    assert fig.axes[0].get_yscale() == "log"
    assert "log" in fig.axes[0].get_ylabel()
    plt.close(fig)
    fig = plot_history(spiked.assign(train_loss=0.0), "bce")  # a loss of 0 has no place on a log axis
    assert fig.axes[0].get_yscale() == "linear"
    plt.close(fig)


def test_dice_versus_minutes_shows_near_equal_scores_as_near_equal():
    """Two tied runs, at 0 and 1e-5, filled the y axis under a "1e-5" offset and looked far apart; the
    dotted budget lines had no legend entry."""
    curves = {
        "original": pd.DataFrame({"train_minutes": [0.4], "dice": [1e-5]}),
        "recommended": pd.DataFrame({"train_minutes": [0.27, 0.27], "dice": [0.0, 0.0]}),
    }
    fig = plot_dice_versus_minutes(curves, budgets=[0.25, 0.5])
    ax = fig.axes[0]
    fig.canvas.draw()
    assert not ax.yaxis.get_major_formatter().get_useOffset()
    assert ax.yaxis.get_offset_text().get_text() == ""
    lo, hi = ax.get_ylim()
    assert hi - lo >= 0.05 and lo >= -0.01  # within [0, 1] but for autoscaling's small margin
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "original",
        "recommended",
        "training budgets",
    ]
    plt.close(fig)
    spread = {"a": pd.DataFrame({"train_minutes": [1, 2], "dice": [0.2, 0.9]})}
    fig = plot_dice_versus_minutes(spread)
    lo, hi = fig.axes[0].get_ylim()
    assert lo < 0.2 and 0.9 < hi < 1  # a wide range autoscales as before
    plt.close(fig)


def _outlines(ax) -> list[ContourSet]:
    return [
        c
        for c in ax.collections
        if isinstance(c, ContourSet) and same_color(c.get_edgecolor()[0], OUTLINE_COLOUR)
    ]


def test_overlays_outline_the_mask(synthetic_root):
    """The 45% green fill alone vanished on green backgrounds, and unmasked green shapes looked masked;
    plot_augmentations promised an outline it did not draw."""
    ds = OxfordPetDataset(synthetic_root, "train")
    fig = plot_overlay_grid(ds, [0, 1], cols=2)
    for ax, i in zip(fig.axes, [0, 1], strict=True):
        (outline,) = _outlines(ax)
        ys, xs = np.nonzero(ds.load_mask(i) == 1)  # the pet, border band and ignored pixels left out
        x, y = np.concatenate([p.vertices for p in outline.get_paths()]).T
        assert xs.min() - 1 <= x.min() and x.max() <= xs.max() + 1
        assert ys.min() - 1 <= y.min() and y.max() <= ys.max() + 1
    plt.close(fig)
    fig = plot_augmentations(ds, 0, train_transform(64), n=2)
    assert all(len(_outlines(ax)) == 1 for ax in fig.axes)
    plt.close(fig)


def test_model_comparison_colours_each_model_alike_in_both_panels():
    """The histogram coloured the models blue and orange, while every violin was blue."""
    rng = np.random.default_rng(0)
    scored = pd.DataFrame(
        {"model": ["unet"] * 20 + ["resnet34_unet"] * 20, "dice": rng.uniform(0.67, 0.97, 40)}
    )
    fig = plot_model_comparison(scored)
    hist, violins = fig.axes
    legend = hist.get_legend()
    in_hist = {
        t.get_text(): h.get_facecolor()[:3]
        for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }
    bodies = [c for c in violins.collections if len(c.get_paths())]  # the violins, in x order
    in_violins = {
        t.get_text(): tuple(c.get_facecolor()[0][:3])
        for t, c in zip(violins.get_xticklabels(), bodies, strict=True)
    }
    assert set(in_hist) == set(in_violins) == {"unet", "resnet34_unet"}
    for model, colour in in_hist.items():
        assert same_color(in_violins[model], colour), model
    assert not same_color(in_violins["unet"], in_violins["resnet34_unet"])
    plt.close(fig)


def test_dice_distribution_colours_each_group_alike_in_both_panels():
    """The histogram coloured cats and dogs apart, while every box was the first colour."""
    rng = np.random.default_rng(0)
    scored = pd.DataFrame({"species": ["cat"] * 15 + ["dog"] * 25, "dice": rng.uniform(0.6, 0.95, 40)})
    fig = plot_dice_distribution(scored, by="species")
    hist, boxes = fig.axes
    legend = hist.get_legend()
    in_hist = {
        t.get_text(): h.get_facecolor()[:3]
        for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }
    in_boxes = {
        t.get_text(): tuple(p.get_facecolor()[:3])
        for t, p in zip(boxes.get_xticklabels(), boxes.patches, strict=True)
    }
    assert set(in_hist) == set(in_boxes) == {"cat", "dog"}
    for species, colour in in_hist.items():
        assert same_color(in_boxes[species], colour), species
    plt.close(fig)


@pytest.mark.parametrize("draw", [plot_dice_distribution, plot_model_comparison])
def test_dice_histograms_bin_over_the_scores_range(draw):
    """Bins over all of (0, 1) left scores between 0.67 and 0.97 in a third of the axis."""
    rng = np.random.default_rng(0)
    dice = np.r_[0.67, 0.97, rng.uniform(0.67, 0.97, 98)]
    scored = pd.DataFrame({"model": ["unet", "resnet34_unet"] * 50, "dice": dice})
    fig = draw(scored, "dice", by="model")
    hist = fig.axes[0]
    edges = np.concatenate([p.vertices[:, 0] for c in hist.collections for p in c.get_paths()])
    assert edges.min() == pytest.approx(0.67) and edges.max() == pytest.approx(0.97)
    lo, hi = hist.get_xlim()
    assert lo > 0.6 and hi < 1
    plt.close(fig)
    fig = draw(scored.assign(dice=0.8), "dice", by="model")  # all alike: a range of 0.05 around them
    edges = np.concatenate([p.vertices[:, 0] for c in fig.axes[0].collections for p in c.get_paths()])
    assert edges.min() == pytest.approx(0.775) and edges.max() == pytest.approx(0.825)
    plt.close(fig)


def test_runs_that_match_stay_apart():
    """Runs with the same curve were drawn alike but for colour, so only the last drawn showed; the y axis
    read "val_dice"."""
    h = HISTORY[["epoch", "val_dice"]]
    fig = plot_metric_by_run({"none": h, "step": h.copy(), "cosine": h.copy()})
    ax = fig.axes[0]
    assert ax.get_ylabel() == "validation Dice"
    lines = ax.get_lines()
    assert len({(line.get_linestyle(), line.get_marker()) for line in lines}) == 3
    widths = [line.get_linewidth() for line in lines]
    # earlier lines wider: where later ones lie on them, they show around the edges
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
    plt.close(fig)
    for column, label in [("train_loss", "training loss"), ("grad_norm", "grad_norm")]:
        fig = plot_metric_by_run({"a": HISTORY.assign(grad_norm=1.0)}, column)
        assert fig.axes[0].get_ylabel() == label  # a column without a name shows as it is
        plt.close(fig)
    fig = plot_lr_curves({"none": [1e-3] * 8, "constant": [1e-3] * 8}, steps_per_epoch=4)
    assert len({(line.get_linestyle(), line.get_marker()) for line in fig.axes[0].get_lines()}) == 2
    plt.close(fig)


def test_size_scatter_draws_the_smaller_species_on_top():
    """Notebook 01 drew the points in table order, one colour per species, opaque: most dogs' points lay
    exactly under cats' of the same size."""
    facts = pd.DataFrame(
        {
            "species": ["dog", "cat", "cat", "cat"],
            "width": 500,
            "height": 375,
            "fg_fraction": [0.3, 0.4, 0.5, 0.6],
        }
    )
    fig = plot_sizes_and_foreground(facts)
    scatter, hist = fig.axes
    (points,) = scatter.collections
    legend = scatter.get_legend()
    colour = {
        t.get_text(): h.get_color() for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }
    drawn = [next(s for s, c in colour.items() if same_color(c, f[:3])) for f in points.get_facecolors()]
    assert drawn == ["cat", "cat", "cat", "dog"]  # the dog last, over the cats
    assert points.get_alpha() < 1
    paths = points.get_paths()
    assert not np.array_equal(paths[0].vertices, paths[-1].vertices)  # and in another marker
    plt.close(fig)


def test_a_large_photo_is_drawn_shrunk_with_its_classes_kept():
    """A 48-megapixel photo's four panels took 7 GB and 40 s to draw, for a figure 1,400 pixels wide."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3000, 2000, 3), np.uint8)
    truth = np.zeros((3000, 2000), np.uint8)
    truth[500:2500, 400:1600], truth[500:505] = 1, 255  # the object and an ignored band
    pred = np.roll(truth == 1, 50, axis=0).astype(np.uint8)
    fig = plot_prediction(image, truth, pred, dice=0.9)
    drawn = [ax.images[0].get_array() for ax in fig.axes]
    assert all(a.shape[:2] == (1000, 667) for a in drawn)  # every third pixel: the panels still line up
    assert max(1000, 667) <= DISPLAY_SIDE
    assert set(np.unique(drawn[1])) == {0, 1, 255} and set(np.unique(drawn[2])) == {
        0,
        1,
    }  # classes, not blends
    assert abs(float(drawn[0].mean()) - float(image.mean())) < 1  # the photo box-filtered, its tones kept
    small = image[:600, :400]
    assert for_display(small) is small  # drawn as it is
    plt.close(fig)


def test_names_that_are_not_utf8_are_drawn_not_lost(tmp_path):
    """A folder from an old zip holds Latin-1 names ("café" as the byte e9): Python reads them with
    surrogates, which matplotlib's font layer refused with TypeError, losing every figure of the run."""
    from seglib.data import FolderDataset, describe
    from seglib.data.demo_folder import make_synthetic_folder
    from seglib.plots import save_figure

    root = make_synthetic_folder(tmp_path / os.fsdecode(b"d\xe9mo"), n=4)
    cafe = os.fsdecode(b"caf\xe9")
    (root / "images" / "photo_000.jpg").rename(root / "images" / f"{cafe}.jpg")
    (root / "masks" / "photo_000.png").rename(root / "masks" / f"{cafe}.png")
    ds = FolderDataset(root, "trainval")
    i = ds.names.index(cafe)
    image, truth = ds.load_image(i), ds.load_mask(i)
    table = describe(ds)
    figures = [
        plot_overlay_grid(ds, range(len(ds))),
        plot_prediction(image, truth, truth, title=ds.entries[i].name, dice=1.0),
        plot_dice_distribution(table.assign(dice=0.9), by="species"),
        plot_sizes_and_foreground(table, by="species"),
    ]
    for k, fig in enumerate(figures):
        assert save_figure(fig, tmp_path / f"{k}.png").stat().st_size > 0
    assert figures[1].texts[0].get_text() == "caf\ufffd"  # the byte shown as the replacement character


def test_figures_replace_only_the_pngs_their_record_names_in_their_folder(synthetic_root, tmp_path):
    """The record of the figures drawn into a folder is a file there, which a hand or a sync tool can edit:
    only a PNG it names in that folder itself is an earlier run's figure to remove."""
    import json

    from seglib.plots import FIGURES_RECORD, save_prediction_figures

    ds = OxfordPetDataset(synthetic_root, "test", limit=2)
    model = build_model("unet", base_channels=4).eval()
    out = tmp_path / "worst"
    out.mkdir()
    mine = [tmp_path / "poster.png", out / "notes.txt", out / "sub" / "fig.png"]
    for path in mine:
        path.parent.mkdir(exist_ok=True)
        path.write_text("mine")
    earlier = out / f"{ds.entries[1].name}.png"  # an earlier run's figure, which this call does not draw
    earlier.write_text("theirs")
    record = ["../poster.png", "notes.txt", "sub/fig.png", earlier.name]
    (out / FIGURES_RECORD).write_text(json.dumps(record))
    paths = save_prediction_figures(model, ds, [0], out, image_size=32, device="cpu")
    assert [p.name for p in paths] == [f"{ds.entries[0].name}.png"]
    assert not earlier.exists() and all(path.read_text() == "mine" for path in mine)
    # replace=False: the earlier figures stay, this call's beside them
    save_prediction_figures(model, ds, [1], out, image_size=32, device="cpu", replace=False)
    assert {p.name for p in out.glob("*.png")} == {f"{e.name}.png" for e in ds.entries[:2]}

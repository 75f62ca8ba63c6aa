"""Figures of the workbook: training curves, image / truth / prediction panels, Dice distributions."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from torch import nn

from .atomic import atomic_write
from .data import IGNORE_INDEX, CorruptSampleError, SegmentationDataset
from .engine import predict_logits
from .engine.predictions import (  # one blend and its colours for the figures, the viewer, the overlays
    FALSE_NEGATIVE_COLOUR,
    FALSE_POSITIVE_COLOUR,
    overlay,
)
from .engine.tta import TTA
from .metrics import dice_per_image, foreground

__all__ = [
    "plot_history",
    "plot_prediction",
    "save_prediction_figures",
    "plot_dice_distribution",
    "save_figure",
    "plot_overlay_grid",
    "plot_border_band",
    "plot_augmentations",
    "plot_prediction_grid",
    "plot_lr_curves",
    "plot_dice_versus_minutes",
    "plot_metric_by_run",
    "plot_model_comparison",
    "plot_sizes_and_foreground",
    "error_map",
    "for_display",
    "shrink",
    "overlay",
    "readable",
]


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save and close a figure (creating the folder)."""
    path = Path(path)
    with atomic_write(path) as f:
        fig.savefig(f, format=path.suffix.lstrip(".") or None, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def _image_axes(ax: Axes) -> None:
    """Axes that show an image: no frame, no ticks. (`axis("off")` alone hides the ticks, yet
    matplotlib still lays their labels out to place the title and to find the tight bounding box.)"""
    ax.axis("off")
    ax.set_xticks([])
    ax.set_yticks([])


# What each `TrainConfig.loss` (seglib.engine.losses.LOSSES) is called on a plot; another name shows as it is.
LOSS_TITLES = {"bce": "BCE", "bce_dice": "BCE + soft Dice"}
# plot_history draws the loss on a log axis when its largest value is more than this many times its smallest
LOG_LOSS_SPAN = 10.0


def _drawable(text: str) -> str:
    """`text` with the bytes of a file name that is not UTF-8 (a Latin-1 zip's "caf\\xe9.jpg" reads as
    "caf\\udce9") shown as U+FFFD: matplotlib's font layer raised TypeError on them, and the figure was lost."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _drawable_groups(df: pd.DataFrame, by: str | None) -> pd.DataFrame:
    """`df` with its `by` column's names drawable (folder names become group names)."""
    if by is None:
        return df
    return df.assign(**{by: df[by].map(lambda v: _drawable(v) if isinstance(v, str) else v)})


def plot_history(history: pd.DataFrame, loss: str | None = None) -> Figure:
    """Loss, Dice and learning rate per epoch, train and validation side by side.

    `loss` is the run's `TrainConfig.loss`, named in the loss panel's title; without it the title says
    only "loss", since a history alone does not record which loss it was.
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(history.epoch, history.train_loss, "o-", label="train")
    axes[0].plot(history.epoch, history.val_loss, "o-", label="val")
    title = "loss" if loss is None else f"loss: {LOSS_TITLES.get(loss, loss)}"
    axes[0].set(title=title, xlabel="epoch")
    losses = history[["train_loss", "val_loss"]].to_numpy(float)
    losses = losses[np.isfinite(losses)]
    # one diverging epoch on a linear axis flattens every other epoch into a line along the bottom
    if len(losses) and losses.min() > 0 and losses.max() > LOG_LOSS_SPAN * losses.min():
        axes[0].set(yscale="log", ylabel="loss (log scale)")
    axes[1].plot(history.epoch, history.train_dice, "o-", label="train")
    axes[1].plot(history.epoch, history.val_dice, "o-", label="val")
    axes[1].set(title="Dice (model resolution)", xlabel="epoch")
    axes[2].plot(history.epoch, history.lr, "o-")
    axes[2].set(title="learning rate", xlabel="epoch", yscale="log")
    for ax in axes:  # epochs are whole: no tick at 1.5 between two of them
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[:2]:
        ax.legend()
    fig.tight_layout()
    return fig


# The longest side an image is drawn at. A panel is a few hundred pixels wide, and matplotlib keeps each
# image it shows as floats: a 48-megapixel photo's four panels took gigabytes and a minute to draw.
DISPLAY_SIDE = 1024


def for_display(arr: np.ndarray) -> np.ndarray:
    """`arr` (an RGB photo, or a mask or map drawn pixel by pixel) with its longest side at most
    DISPLAY_SIDE (`shrink`)."""
    return shrink(arr, -(-max(arr.shape[:2]) // DISPLAY_SIDE))


def shrink(arr: np.ndarray, step: int) -> np.ndarray:
    """`arr` from every `step`-th pixel: an RGB photo box-filtered, a mask sampled (its values stay
    classes); as it is for a step of 1."""
    if step <= 1:
        return arr
    if arr.ndim == 3 and arr.dtype == np.uint8 and arr.shape[2] == 3:
        return np.asarray(Image.fromarray(arr).reduce(step))
    return arr[::step, ::step]


def error_map(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB image: true positives white, false positives red, false negatives blue, ignored grey."""
    out = np.zeros((*truth.shape, 3), np.uint8)
    t, p = truth == 1, pred == 1
    out[t & p] = (255, 255, 255)
    out[~t & p & (truth != IGNORE_INDEX)] = FALSE_POSITIVE_COLOUR
    out[t & ~p] = FALSE_NEGATIVE_COLOUR
    out[truth == IGNORE_INDEX] = (128, 128, 128)
    return out


def plot_prediction(
    image: np.ndarray,
    truth: np.ndarray | None,
    pred: np.ndarray,
    title: str = "",
    dice: float | None = None,
    precision: str = "",
) -> Figure:
    """Image / ground truth / prediction (and error map when the truth is known). `dice` is shown on the
    prediction, with the `precision` it was computed in when given ("fp32"). Large images are drawn
    shrunk (`for_display`)."""
    image, pred = for_display(image), for_display(pred)
    truth = None if truth is None else for_display(truth)
    panels: list[tuple[str, np.ndarray, str | None]] = [("image", image, None)]  # name, array, colour map
    if truth is not None:
        panels.append(("ground truth", truth, "gray"))
    said = f"Dice {dice:.3f}" + (f", {precision}" if precision else "")
    panels.append(("prediction" + (f" ({said})" if dice is not None else ""), pred, "gray"))
    if truth is not None:
        panels.append(("errors: FP red, FN blue", error_map(truth, pred), None))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (name, arr, cmap) in zip(axes, panels, strict=True):
        ax.imshow(arr, cmap=cmap, vmin=0, vmax=1 if cmap else None, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        _image_axes(ax)
    if title:
        fig.suptitle(_drawable(title), fontsize=10)
    fig.tight_layout()
    return fig


def readable(dataset: SegmentationDataset, indices: Sequence[int]) -> list[int]:
    """`indices` without the images that cannot be read, when the data set skips those
    (`on_corrupt="skip"`; a warning names them); otherwise all of them, and reading one raises."""
    if dataset.on_corrupt != "skip":
        return list(indices)
    kept, unread = [], []
    for i in indices:
        try:
            dataset.load_pair(i)
        except CorruptSampleError as e:
            unread.append(f"{dataset.entries[i].name} ({e})")
            continue
        kept.append(i)
    if unread and not kept:
        raise CorruptSampleError(
            f"none of the {len(unread)} image(s) to show can be read: {'; '.join(unread[:3])}"
        )
    if unread:
        warnings.warn(f"{len(unread)} unreadable image(s) not shown: {'; '.join(unread[:3])}", stacklevel=3)
    return kept


def save_prediction_figures(
    model: nn.Module,
    dataset: SegmentationDataset,
    indices: Sequence[int],
    out_dir: str | Path,
    image_size: int | None = None,
    threshold: float = 0.5,
    device: str = "auto",
    tta: bool | TTA = False,
    replace: bool = True,
) -> list[Path]:
    """For each index: image / truth / prediction / errors at the original resolution, saved as PNG.

    `replace`: the figures an earlier call wrote into `out_dir` (an earlier model's worst images) and this
    one does not are removed, said in one line: beside this call's, they would pass for its own. Only the
    files its record (`FIGURES_RECORD`, kept in `out_dir`) names go: any other file there stays."""
    out, shown = Path(out_dir), readable(dataset, indices)
    names = [f"{dataset.entries[i].name}.png" for i in shown]
    earlier = _recorded(out)
    if not set(names) <= earlier:  # recorded before drawn: a figure left by a crash is still known as ours
        _record(out, earlier | set(names))
    paths = []
    for i in shown:
        image, truth = dataset.load_image(i), dataset.load_mask(i)
        logits = predict_logits(model, image, image_size, device, tta)  # (H, W) at the original size
        dice = dice_per_image(logits[None], torch.from_numpy(truth)[None], threshold).item()
        pred = foreground(logits, threshold).numpy().astype(np.uint8)
        name = dataset.entries[i].name
        # fp32, as predict_logits computes: evaluate's table can be bf16 autocast, a little apart
        fig = plot_prediction(image, truth, pred, title=name, dice=dice, precision="fp32")
        paths.append(save_figure(fig, out / f"{name}.png"))
    if replace and earlier - set(names):
        stale = [out / n for n in sorted(earlier - set(names)) if (out / n).is_file()]
        for p in stale:
            p.unlink(missing_ok=True)
        _record(out, names)
        if stale:
            print(f"seglib: removed {len(stale)} figures of an earlier run from {out_dir}")
    return paths


# The names of the figures `save_prediction_figures` wrote into a folder, kept there: the next call removes
# those, never a file of the user's beside them (a poster, a thesis figure).
FIGURES_RECORD = ".seglib-figures.json"


def _recorded(folder: Path) -> set[str]:
    """The figure names `folder`'s record lists, each a PNG file's name in `folder` itself."""
    try:
        names = json.loads((folder / FIGURES_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        # no record: a new folder, or one an older seglib wrote, whose figures cannot be told from the
        # user's files and are left alone; a damaged record likewise removes nothing (the next call rewrites it)
        return set()
    if not isinstance(names, list):
        return set()
    # a name with a folder in it (an edited record) would remove a file elsewhere
    return {n for n in names if isinstance(n, str) and n.endswith(".png") and Path(n).name == n}


def _record(folder: Path, names: Iterable[str]) -> None:
    """Write `folder`'s record of the figures seglib wrote there (atomic: a crash keeps the old one)."""
    with atomic_write(folder / FIGURES_RECORD, "w") as f:
        json.dump(sorted(names), f, indent=1)
        f.write("\n")


# The narrowest range a plot gives scores (Dice) on an axis: differences below it are not worth a full axis.
MIN_SCORE_SPAN = 0.05


def _padded(lo: float, hi: float, span: float) -> tuple[float, float]:
    """(lo, hi) widened around its centre to at least `span`, kept within [0, 1] when it lies there."""
    if hi - lo >= span:
        return lo, hi
    centre = (lo + hi) / 2
    if lo >= 0 and hi <= 1:  # a score: the window slides to stay within [0, 1]
        centre = min(max(centre, span / 2), 1 - span / 2)
    return centre - span / 2, centre + span / 2


def _bins(scores: pd.Series) -> dict[str, Any]:
    """seaborn.histplot's `bins` and `binrange` for per-image scores in [0, 1]: bins over the scores' own
    range (at least MIN_SCORE_SPAN wide), about the square root of their number, 5 to 30."""
    values = scores.to_numpy(float)
    values = values[np.isfinite(values)]
    if not len(values):
        return {"bins": 30, "binrange": (0, 1)}
    # bins over all of (0, 1) left scores in a narrow band a corner of the axis and a few of its bins
    lo, hi = _padded(max(values.min(), 0.0), min(values.max(), 1.0), MIN_SCORE_SPAN)
    return {"bins": int(np.clip(round(np.sqrt(len(values))), 5, 30)), "binrange": (lo, hi)}


def _colours(df: pd.DataFrame, by: str) -> dict[str, Any]:
    """seaborn's hue settings for `by`: one colour per group, in the order the rows first name them, the
    same in every panel of a figure (a panel drawn without them is all one colour)."""
    import seaborn as sns

    order = list(pd.unique(df[by].dropna()))
    palette = dict(zip(order, sns.color_palette(n_colors=len(order)), strict=True))
    return {"hue": by, "hue_order": order, "palette": palette}


def plot_dice_distribution(df: pd.DataFrame, column: str = "dice", by: str | None = None) -> Figure:
    """Histogram of the per-image Dice (one colour per `by` group, e.g. model or species) and a box plot."""
    import seaborn as sns  # here, not at the top: with scipy it is most of this module's import

    df = _drawable_groups(df, by)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    colours = _colours(df, by) if by else {}
    sns.histplot(data=df, x=column, **_bins(df[column]), element="step", ax=axes[0], **colours)
    axes[0].axvline(df[column].mean(), color="k", ls="--", lw=1)
    axes[0].set(
        title=f"per-image {column}: {len(df)} images, mean {df[column].mean():.3f} (dashed)", xlabel=column
    )
    boxes = {"order": colours["hue_order"], "saturation": 1, "legend": False} if by else {}
    sns.boxplot(data=df, y=column, x=by, ax=axes[1], **boxes, **colours)
    axes[1].set(title=f"{column} by {by}" if by else column, ylim=(0, 1.02))
    fig.tight_layout()
    return fig


def plot_sizes_and_foreground(facts: pd.DataFrame, by: str = "species") -> Figure:
    """Image width against height, and a histogram of the pet's share of the image (`fg_fraction`), one
    colour per `by` group; `facts` is `seglib.data.describe`'s table."""
    import seaborn as sns  # here, not at the top: with scipy it is most of this module's import

    facts = _drawable_groups(facts, by)
    colours = _colours(facts, by)
    order = colours["hue_order"]
    # Many images share a size: one species' points hid the other's at the same place. Smaller groups are
    # drawn last, on top, as crosses over the largest group's dots, translucent: a size both species have
    # shows both.
    largest_first = list(facts[by].value_counts().index)
    markers = {g: ("o", "X", "P", "D", "^")[k % 5] for k, g in enumerate(largest_first)}
    count = facts.groupby(by)[by].transform("size")
    drawn = facts.assign(_count=count).sort_values("_count", ascending=False, kind="stable")
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    scatter = {"style": by, "style_order": order, "markers": markers, "s": 22, "alpha": 0.6}
    sns.scatterplot(data=drawn, x="width", y="height", ax=axes[0], **scatter, **colours)
    axes[0].set_title("image sizes (px)")
    sns.histplot(data=facts, x="fg_fraction", bins=30, element="step", ax=axes[1], **colours)
    axes[1].set_title("share of the image that is pet (trimap 1 and 3)")
    fig.tight_layout()
    return fig


def _overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return overlay(image, [(mask, (40, 200, 60))])


# The mask's outline on the overlays: the green fill alone vanishes on green fur, grass or blankets, and
# an unmasked green shape looks masked. Magenta is none of the fill, prediction or error colours; a dark
# line under it keeps it visible on magenta too.
OUTLINE_COLOUR = "#ff00ff"


def _outline(ax: Axes, mask: np.ndarray) -> None:
    """Draw the boundary of boolean `mask` on an image axes (nothing for an empty or a full mask)."""
    mask = np.asarray(mask, bool)
    if mask.any() and not mask.all():  # else contour warns that it found no level
        ax.contour(mask.astype(np.float32), levels=[0.5], colors="black", linewidths=2.4)
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=OUTLINE_COLOUR, linewidths=1.2)


def _some(indices: Sequence[int], what: str) -> Sequence[int]:
    """`indices`, or a ValueError where there are none (matplotlib's own says "Number of rows")."""
    if not len(indices):
        raise ValueError(f"{what}: no images to show; ask for at least one (a notebook's grid_images, worst)")
    return indices


def plot_overlay_grid(dataset: SegmentationDataset, indices: Sequence[int], cols: int = 4) -> Figure:
    """Images with their pet mask overlaid (green, outlined in magenta), titled by name and species."""
    indices = _some(readable(dataset, indices), "plot_overlay_grid")
    rows = -(-len(indices) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        _image_axes(ax)
    for ax, i in zip(axes.flat, indices, strict=False):
        pet = for_display(dataset.load_mask(i)) == 1
        ax.imshow(_overlay(for_display(dataset.load_image(i)), pet))
        _outline(ax, pet)
        ax.set_title(_drawable(f"{dataset.entries[i].name}\n{dataset.entries[i].species}"), fontsize=8)
    fig.tight_layout()
    return fig


def plot_border_band(dataset: SegmentationDataset, index: int) -> Figure:
    """The trimap of one image: pet, background and the border band, with a zoom on the band."""
    trimap = dataset.load_trimap(index)
    ys, xs = np.nonzero(trimap == 3)
    # centred on a band pixel: the median point of a band around the pet lies inside the pet
    k = int(np.argmin((ys - np.median(ys)) ** 2 + (xs - np.median(xs)) ** 2))
    cy, cx = int(ys[k]), int(xs[k])
    half = max(12, min(trimap.shape) // 10)
    window = (slice(max(cy - half, 0), cy + half), slice(max(cx - half, 0), cx + half))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    axes[0].imshow(for_display(dataset.load_image(index)))
    axes[0].set_title(_drawable(dataset.entries[index].name))
    cmap = matplotlib.colors.ListedColormap(
        ["#2a9d8f", "#264653", "#e9c46a"]
    )  # 1 pet, 2 background, 3 border
    axes[1].imshow(for_display(trimap), cmap=cmap, vmin=1, vmax=3, interpolation="nearest")
    axes[1].set_title("trimap: pet, background, border (yellow)")
    axes[2].imshow(trimap[window], cmap=cmap, vmin=1, vmax=3, interpolation="nearest")
    axes[2].set_title("zoom on the border band")
    for ax in axes:
        _image_axes(ax)
    fig.tight_layout()
    return fig


def plot_augmentations(dataset: SegmentationDataset, index: int, transform: Any, n: int = 6) -> Figure:
    """`n` draws of a training transform on one image, mask overlaid and outlined (seeded: reproducible)."""
    from .data import IMAGENET_MEAN, IMAGENET_STD, seed_transform

    _some(range(n), "plot_augmentations")
    image, mask = dataset.load_image(index), dataset.load_mask(index)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.8), squeeze=False)
    for k, ax in enumerate(axes[0]):
        seed_transform(transform, k)
        out = transform(image=image, mask=mask)
        img = out["image"].numpy().transpose(1, 2, 0) * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)
        pet = np.asarray(out["mask"]) == 1
        ax.imshow(_overlay((img.clip(0, 1) * 255).astype(np.uint8), pet))
        _outline(ax, pet)
        ax.set_title(f"draw {k}", fontsize=8)
        _image_axes(ax)
    fig.tight_layout()
    return fig


def plot_prediction_grid(
    model: nn.Module,
    dataset: SegmentationDataset,
    indices: Sequence[int],
    image_size: int,
    threshold: float = 0.5,
    device: str = "auto",
    tta: bool | TTA = False,
) -> Figure:
    """One row per image: image / truth / prediction / error map (FP red, FN blue), at original resolution."""
    indices = _some(readable(dataset, indices), "plot_prediction_grid")
    fig, axes = plt.subplots(len(indices), 4, figsize=(12, 2.9 * len(indices)), squeeze=False)
    for row, i in zip(axes, indices, strict=True):
        image, truth = dataset.load_image(i), dataset.load_mask(i)
        logits = predict_logits(model, image, image_size, device, tta)
        dice = dice_per_image(logits[None], torch.from_numpy(truth)[None], threshold).item()
        pred = foreground(logits, threshold).numpy().astype(np.uint8)
        image, truth, pred = for_display(image), for_display(truth), for_display(pred)  # Dice: full size
        panels = [
            (image, None, _drawable(dataset.entries[i].name)),
            (truth, "gray", "truth"),
            (pred, "gray", f"prediction, Dice {dice:.3f} (fp32)"),  # evaluate's table can be bf16
            (error_map(truth, pred), None, "errors"),
        ]
        for ax, (arr, cmap, title) in zip(row, panels, strict=True):
            ax.imshow(arr, cmap=cmap, vmin=0, vmax=1 if cmap else None, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            _image_axes(ax)
    fig.tight_layout()
    return fig


# Each run's line style and marker on the plots of several runs (the k-th: LINESTYLES[k % 4], MARKERS[k % 5]):
# runs that match draw over one another, and colour alone leaves only the last one drawn.
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v")


def _run_style(k: int, n: int) -> dict[str, Any]:
    """Line style, width and marker of the `k`-th of `n` runs. Earlier runs are drawn wider, with larger
    hollow markers, so that where later ones lie on them they still show around the edges."""
    wide = (n - 1 - k) / max(n - 1, 1)  # 1 for the first run drawn, 0 for the last
    return {
        "ls": LINESTYLES[k % len(LINESTYLES)],
        "lw": 1.2 + 2.3 * wide,
        "marker": MARKERS[k % len(MARKERS)],
        "ms": 5 + 5 * wide,
        "mfc": "none",
    }


# What a history column is called on a plot's axis; another column shows as it is.
COLUMN_NAMES = {
    "val_dice": "validation Dice",
    "train_dice": "training Dice",
    "val_loss": "validation loss",
    "train_loss": "training loss",
    "lr": "learning rate",
    "dice": "Dice",
    "iou": "IoU",
}


def plot_lr_curves(curves: dict[str, Sequence[float]], steps_per_epoch: int) -> Figure:
    """Learning rate against epoch for several schedules: epoch k spans k to k + 1 (numbered from 1, as the
    runs' tables are), each step's lr held until the next (a per-epoch schedule's change is a jump)."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for k, (name, lrs) in enumerate(curves.items()):
        x = 1 + np.arange(len(lrs)) / steps_per_epoch
        # a marker at each epoch's first step: a few per curve, not one per step
        style = _run_style(k, len(curves)) | {"markevery": max(steps_per_epoch, 1)}
        ax.plot(x, lrs, label=name, drawstyle="steps-post", **style)
    ax.set(xlabel="epoch", ylabel="learning rate", title="learning-rate schedules")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_metric_by_run(histories: dict[str, pd.DataFrame], column: str = "val_dice") -> Figure:
    """One line per run, each in its own colour, line style and marker: `column` per epoch."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for k, (name, h) in enumerate(histories.items()):
        ax.plot(h.epoch, h[column], label=name, **_run_style(k, len(histories)))
    name = COLUMN_NAMES.get(column, column)
    ax.set(xlabel="epoch", ylabel=name, title=f"{name} per epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    ax.legend()
    fig.tight_layout()
    return fig


def plot_model_comparison(df: pd.DataFrame, column: str = "dice", by: str = "model") -> Figure:
    """Per-image `column` of several models: overlaid histograms and a violin plot."""
    import seaborn as sns  # here, not at the top: with scipy it is most of this module's import

    if df[column].notna().sum() == 0:  # seaborn's own error names none of this
        raise ValueError(f"plot_model_comparison: no {column} to show (the table has no scored image)")
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    # one colour per model in both panels: without a hue the violins were all the first colour
    colours = _colours(df, by)
    order = colours["hue_order"]
    sns.histplot(data=df, x=column, **_bins(df[column]), element="step", ax=axes[0], **colours)
    axes[0].set(title=f"per-image {column} at original resolution", xlabel=column)
    # saturation 1: seaborn's default greys the violins a little away from the histogram's colours
    violins = {"cut": 0, "inner": "quartile", "saturation": 1, "legend": False}
    sns.violinplot(data=df, x=by, y=column, order=order, ax=axes[1], **violins, **colours)
    axes[1].set(title=f"{column} by {by}", ylim=(0, 1.02))
    fig.tight_layout()
    return fig


def plot_dice_versus_minutes(
    curves: dict[str, pd.DataFrame],
    budgets: Sequence[float] = (),
    column: str = "dice",
    title: str = "",
    dashed: dict[str, pd.DataFrame] | None = None,
    marks_label: str = "training budgets",
) -> Figure:
    """Dice against minutes of training, one line per recipe (from `seglib.study.dice_versus_minutes`);
    `dashed` curves (a run's own models, stopped early) thin and dashed; `budgets` as dotted lines, named
    `marks_label` in the legend (`StudyCurves.marks_label`: a fixed-epoch study has no budgets)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, curve in curves.items():
        ax.plot(curve.train_minutes, curve[column], "o-", ms=5, label=name)
    for name, curve in (dashed or {}).items():
        ax.plot(curve.train_minutes, curve[column], ".--", lw=1, alpha=0.7, label=name)
    for k, b in enumerate(budgets):  # one legend entry for all: unnamed, they pass for grid lines
        ax.axvline(b, color="grey", lw=0.8, ls=":", label=marks_label if k == 0 else None)
    ax.set(xlabel="minutes of training", ylabel=column, title=title or f"{column} versus training time")
    # Autoscaled, near-equal scores spread over the whole axis under an offset label and looked far
    # apart: no offset, and a range at least MIN_SCORE_SPAN wide.
    ax.ticklabel_format(axis="y", useOffset=False)
    drawn = [*curves.values(), *(dashed or {}).values()]
    values = np.concatenate([np.empty(0), *(np.asarray(c[column], float) for c in drawn)])
    values = values[np.isfinite(values)]
    if len(values) and values.max() - values.min() < MIN_SCORE_SPAN:
        lo, hi = _padded(values.min(), values.max(), MIN_SCORE_SPAN)
        margin = 0.05 * (hi - lo)  # as autoscaling leaves: a marker at 0 or 1 is not cut in half
        ax.set_ylim(lo - margin, hi + margin)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

"""Figures of the workbook: training curves, image / truth / prediction panels, Dice distributions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure
from torch import nn

from .data import IGNORE_INDEX, OxfordPetDataset
from .engine import predict_logits
from .metrics import dice_per_image

__all__ = [
    "plot_history",
    "plot_prediction",
    "save_prediction_figures",
    "plot_dice_distribution",
    "save_figure",
]


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save and close a figure (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_history(history: pd.DataFrame) -> Figure:
    """Loss, Dice and learning rate per epoch, train and validation side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(history.epoch, history.train_loss, "o-", label="train")
    axes[0].plot(history.epoch, history.val_loss, "o-", label="val")
    axes[0].set(title="BCE loss", xlabel="epoch")
    axes[1].plot(history.epoch, history.train_dice, "o-", label="train")
    axes[1].plot(history.epoch, history.val_dice, "o-", label="val")
    axes[1].set(title="Dice (model resolution)", xlabel="epoch")
    axes[2].plot(history.epoch, history.lr, "o-")
    axes[2].set(title="learning rate", xlabel="epoch", yscale="log")
    for ax in axes[:2]:
        ax.legend()
    fig.tight_layout()
    return fig


def error_map(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB image: true positives white, false positives red, false negatives blue, ignored grey."""
    out = np.zeros((*truth.shape, 3), np.uint8)
    t, p = truth == 1, pred == 1
    out[t & p] = (255, 255, 255)
    out[~t & p & (truth != IGNORE_INDEX)] = (230, 40, 40)
    out[t & ~p] = (40, 90, 230)
    out[truth == IGNORE_INDEX] = (128, 128, 128)
    return out


def plot_prediction(
    image: np.ndarray, truth: np.ndarray | None, pred: np.ndarray, title: str = "", dice: float | None = None
) -> Figure:
    """Image / ground truth / prediction (and error map when the truth is known)."""
    panels = [("image", image, None)]
    if truth is not None:
        panels.append(("ground truth", truth, "gray"))
    panels.append(("prediction" + (f" (Dice {dice:.3f})" if dice is not None else ""), pred, "gray"))
    if truth is not None:
        panels.append(("errors: FP red, FN blue", error_map(truth, pred), None))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (name, arr, cmap) in zip(axes, panels, strict=True):
        ax.imshow(arr, cmap=cmap, vmin=0, vmax=1 if cmap else None, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_prediction_figures(
    model: nn.Module,
    dataset: OxfordPetDataset,
    indices: Sequence[int],
    out_dir: str | Path,
    image_size: int = 256,
    threshold: float = 0.5,
    device: str = "auto",
) -> list[Path]:
    """For each index: image / truth / prediction / errors at the original resolution, saved as PNG."""
    paths = []
    for i in indices:
        image, truth = dataset.load_image(i), dataset.load_mask(i)
        logits = predict_logits(model, image, image_size, device)  # (H, W) at the original size
        dice = dice_per_image(logits[None], torch.from_numpy(truth)[None], threshold).item()
        pred = (torch.sigmoid(logits) > threshold).numpy().astype(np.uint8)
        name = dataset.entries[i].name
        fig = plot_prediction(image, truth, pred, title=name, dice=dice)
        paths.append(save_figure(fig, Path(out_dir) / f"{name}.png"))
    return paths


def plot_dice_distribution(df: pd.DataFrame, column: str = "dice", by: str | None = None) -> Figure:
    """Histogram of the per-image Dice (one colour per `by` group, e.g. model or species) and a box plot."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    sns.histplot(data=df, x=column, hue=by, bins=30, binrange=(0, 1), element="step", ax=axes[0])
    axes[0].axvline(df[column].mean(), color="k", ls="--", lw=1)
    axes[0].set(
        title=f"per-image {column}: {len(df)} images, mean {df[column].mean():.3f} (dashed)", xlabel=column
    )
    sns.boxplot(data=df, y=column, x=by, ax=axes[1])
    axes[1].set(title=f"{column} by {by}" if by else column, ylim=(0, 1.02))
    fig.tight_layout()
    return fig

"""Evaluation at the original image resolution (the headline) and at model resolution, and `predict`.

Predictions are up-sampled (bilinear, on the logits) back to each image's original size before the
threshold, and compared with the original trimap: what a user of the mask actually gets.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..data import SegmentationDataset, eval_transform, open_rgb
from ..metrics import (
    IGNORE_INDEX,
    confusion_counts,
    dataset_dice,
    dataset_iou,
    dice_from_counts,
    iou_from_counts,
)
from .checkpoint import load_checkpoint, load_model
from .distributed import all_gather_object, get_rank, get_world_size
from .loaders import eval_loader
from .progress import progress_bar
from .runtime import autocast, default_amp, resolve_device, to_device_batch

__all__ = ["evaluate", "forward_tta", "predict", "predict_logits", "summarize", "checkpoint_image_size"]


def checkpoint_image_size(path: str | Path, default: int = 256) -> int:
    """The image size a checkpoint's model was trained at."""
    return int(load_checkpoint(path).get("config", {}).get("image_size", default))


def _as_model(model_or_checkpoint: nn.Module | str | Path, device: torch.device) -> nn.Module:
    if isinstance(model_or_checkpoint, nn.Module):
        return model_or_checkpoint.to(device).eval()
    return load_model(model_or_checkpoint, map_location=device)


@torch.no_grad()
def evaluate(
    model_or_checkpoint: nn.Module | str | Path,
    dataset: SegmentationDataset,
    device: str = "auto",
    *,
    batch_size: int = 8,
    threshold: float = 0.5,
    num_workers: int | None = None,
    channels_last: bool = True,
    amp: bool | None = None,
    progress: bool = True,
    tta: bool = False,
) -> pd.DataFrame:
    """One row per image: name, breed, species, size, Dice and IoU at original and model resolution.

    Columns `dice`, `iou` (and the counts `tp`, `fp`, `fn`) are at the original resolution;
    `dice_model`, `iou_model` at the model's input resolution; `fg_fraction` is the share of pet
    pixels in the truth, `pred_fraction` in the prediction. `tta=True` averages each image's logits
    with those of its mirror image (horizontal-flip test-time augmentation).

    In a distributed run (a process group is initialised, e.g. by `distributed.init_distributed`) rank r
    scores the images r, r + W, ... and every rank returns all rows, in dataset order: the same table as
    one process, each image scored once.
    """
    dev = resolve_device(device)
    model = _as_model(model_or_checkpoint, dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    ds = copy.copy(dataset)
    ds.return_full_mask = True
    use_amp = default_amp(dev) if amp is None else amp
    rank, world = get_rank(), get_world_size()
    loader = eval_loader(ds, batch_size, dev, num_workers, rank=rank, world_size=world)
    rows: list[tuple[int, dict[str, Any]]] = []  # (dataset index, row)
    skipped: list[str] = []
    for batch in progress_bar(loader, desc="evaluate", leave=False, disable=not progress or rank != 0):
        skipped += batch["skipped"]
        if batch["image"] is None:
            continue
        images, masks = to_device_batch(batch["image"], batch["mask"], dev, channels_last)
        with autocast(dev, use_amp):
            logits = forward_tta(model, images, tta)  # (B, 1, h, w)
        rows += _image_rows(ds, batch, logits, masks, threshold)
    if world > 1:
        parts = all_gather_object((rows, skipped))
        rows = sorted((r for part, _ in parts for r in part), key=lambda r: r[0])
        skipped = [s for _, part in parts for s in part]
    if skipped:
        warnings.warn(
            f"evaluate: {len(skipped)} unreadable image(s) left out: {'; '.join(skipped[:5])}", stacklevel=2
        )
    return pd.DataFrame([row for _, row in rows])


def _image_rows(
    ds: SegmentationDataset,
    batch: dict[str, Any],
    logits: torch.Tensor,
    masks: torch.Tensor,
    threshold: float,
) -> list[tuple[int, dict[str, Any]]]:
    """(dataset index, row) for each image of a batch: its logits up-sampled to the original trimap."""
    tp_m, fp_m, fn_m = confusion_counts(logits, masks, threshold)
    dice_m, iou_m = dice_from_counts(tp_m, fp_m, fn_m), iou_from_counts(tp_m, fp_m, fn_m)
    rows = []
    for j, full in enumerate(batch["mask_full"]):
        full = full.to(logits.device)
        up = F.interpolate(logits[j : j + 1], size=full.shape, mode="bilinear", align_corners=False)
        tp, fp, fn = (c.item() for c in confusion_counts(up[:, 0], full[None], threshold))
        counts = torch.tensor(tp), torch.tensor(fp), torch.tensor(fn)
        valid = (full != IGNORE_INDEX).sum().item()
        i = int(batch["index"][j])
        entry = ds.entries[i]
        row = {
            "name": entry.name,
            "breed": entry.breed,
            "species": entry.species,
            "height": full.shape[0],
            "width": full.shape[1],
            "dice": float(dice_from_counts(*counts)),
            "iou": float(iou_from_counts(*counts)),
            "dice_model": dice_m[j].item(),
            "iou_model": iou_m[j].item(),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "fg_fraction": (tp + fn) / max(valid, 1),
            "pred_fraction": (tp + fp) / max(valid, 1),
        }
        rows.append((i, row))
    return rows


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, median and min of the per-image Dice and IoU, and the dataset-level (micro) Dice and IoU.

    One row for the original resolution; one for the model resolution (no dataset-level there).
    """
    t = {c: torch.tensor(df[c].to_numpy(dtype=np.float64)) for c in ("tp", "fp", "fn")}
    rows = [
        {
            "resolution": "original",
            "images": len(df),
            "dice_mean": df.dice.mean(),
            "dice_median": df.dice.median(),
            "dice_min": df.dice.min(),
            "iou_mean": df.iou.mean(),
            "iou_median": df.iou.median(),
            "iou_min": df.iou.min(),
            "dice_dataset": float(dataset_dice(t["tp"], t["fp"], t["fn"])),
            "iou_dataset": float(dataset_iou(t["tp"], t["fp"], t["fn"])),
        },
        {
            "resolution": "model",
            "images": len(df),
            "dice_mean": df.dice_model.mean(),
            "dice_median": df.dice_model.median(),
            "dice_min": df.dice_model.min(),
            "iou_mean": df.iou_model.mean(),
            "iou_median": df.iou_model.median(),
            "iou_min": df.iou_model.min(),
            "dice_dataset": np.nan,
            "iou_dataset": np.nan,
        },
    ]
    return pd.DataFrame(rows).set_index("resolution")


def _as_rgb_array(image: np.ndarray | Image.Image | str | Path) -> np.ndarray:
    if isinstance(image, str | Path):
        return np.asarray(open_rgb(image))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"image must be uint8 HxWx3 RGB, got dtype {arr.dtype} shape {arr.shape}")
    return arr


def forward_tta(model: nn.Module, x: torch.Tensor, tta: bool) -> torch.Tensor:
    """model(x), or with test-time augmentation the mean of the logits of x and of its mirror image."""
    logits = model(x).float()
    if tta:
        logits = (logits + model(x.flip(-1)).float().flip(-1)) / 2
    return logits


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    image: np.ndarray | Image.Image | str | Path,
    image_size: int = 256,
    device: str = "auto",
    tta: bool = False,
) -> torch.Tensor:
    """Logits (H, W) at the image's original size, on the CPU (`tta`: averaged with the mirror image's)."""
    dev = resolve_device(device)
    rgb = _as_rgb_array(image)
    x = eval_transform(image_size)(image=rgb)["image"].unsqueeze(0).to(dev)
    model = model.to(dev).eval()
    logits = forward_tta(model, x, tta)
    up = F.interpolate(logits, size=rgb.shape[:2], mode="bilinear", align_corners=False)
    return up[0, 0].cpu()


def predict(
    model: nn.Module,
    image: np.ndarray | Image.Image | str | Path,
    image_size: int = 256,
    threshold: float = 0.5,
    device: str = "auto",
    tta: bool = False,
) -> np.ndarray:
    """The predicted mask (uint8 0/1, HxW) at the image's original size."""
    logits = predict_logits(model, image, image_size, device, tta)
    return (torch.sigmoid(logits) > threshold).numpy().astype(np.uint8)

"""Evaluation at the original image resolution (the headline) and at model resolution, and `predict`.

Predictions are up-sampled (bilinear, on the logits) back to each image's original size before the
threshold, and compared with the original trimap: what a user of the mask actually gets.

`evaluate` keeps every count on the device and copies all scores to the host once, after the last
batch (no sync per image or batch); on CUDA it scores a batch's images in one pass, and casts the
weights to bf16 once per call; a small set is read without loader workers; on the "device" data path
(CUDA's default) uint8 batches travel and are normalised there (`batches.BatchPrep`), with the same
table as on the host.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..allocator import release_idle_memory
from ..data import (
    CorruptSampleError,
    SegmentationDataset,
    eval_transform,
    open_rgb,
    rgb_image,
    uint8_transform,
    upright_image,
)
from ..metrics import (
    IGNORE_INDEX,
    confusion_counts,
    dataset_dice,
    dataset_iou,
    dice_from_counts,
    foreground,
    iou_from_counts,
    segment_counts,
)
from .batches import BatchPrep, resolve_device_data
from .checkpoint import TRAINED_SIZE, load_checkpoint, load_model
from .distributed import all_gather_object, get_rank, get_world_size
from .intervals import mean_interval
from .loaders import eval_loader
from .progress import progress_bar
from .runtime import amp_dtype, autocast, autocast_cache, default_amp, default_num_workers, resolve_device
from .threadloader import default_read_threads
from .tta import TTA, as_tta, forward_tta, tta_sizes, warn_unused_scales
from .workers import death_said, ended_workers, exit_code, how_it_ended, settled, worker_lost, workers_stopped

__all__ = [
    "evaluate",
    "predict",
    "predict_logits",
    "summarize",
    "checkpoint_image_size",
    "checkpoint_threshold",
    "model_image_size",
    "scored_indices",
    "scoring_precision",
    "worst_indices",
]

# Sets of at most this many images (per process) are read without loader workers: starting up to 8
# worker processes on every call costs more than they save on so few images.
SMALL_EVAL = 256


def checkpoint_image_size(path: str | Path | dict[str, Any], default: int = 256) -> int:
    """The image size a checkpoint's model was trained at (`path`: its file, or the loaded checkpoint)."""
    ckpt = path if isinstance(path, dict) else load_checkpoint(path)
    return int(ckpt.get("config", {}).get("image_size", default))


def checkpoint_threshold(path: str | Path | dict[str, Any], default: float = 0.5) -> float:
    """The threshold a checkpoint's run validated at, and so chose its best.pt at (`path`: its file, or
    the loaded checkpoint); `default` for a run saved before TrainConfig had one."""
    ckpt = path if isinstance(path, dict) else load_checkpoint(path)
    return float(ckpt.get("config", {}).get("threshold", default))


def scoring_precision(device: str | torch.device = "auto", amp: bool | None = None) -> str:
    """What `evaluate(..., device=device, amp=amp)` runs the model in: "bf16 autocast" ("fp16 autocast" on
    a GPU without bf16) or "fp32", which gives the exact scores."""
    dev = resolve_device(device) if isinstance(device, str) else device
    if not (default_amp(dev) if amp is None else amp) or dev.type not in ("cuda", "cpu"):
        return "fp32"  # `autocast` casts on CUDA and CPUs only
    return f"{'bf16' if amp_dtype(dev) == torch.bfloat16 else 'fp16'} autocast"


@contextmanager
def _scoring(
    model_or_checkpoint: nn.Module | str | Path, device: torch.device, channels_last: bool
) -> Iterator[nn.Module]:
    """The model on `device` in eval mode (channels_last if asked) while it scores. A caller's model gets
    its mode and memory format back: one scored mid-training goes on training as it was (not in eval
    mode, whose BatchNorm and dropout do not learn)."""
    if not isinstance(model_or_checkpoint, nn.Module):
        model = load_model(model_or_checkpoint, map_location=device)
        yield model.to(memory_format=torch.channels_last) if channels_last else model
        return
    model, training = model_or_checkpoint, model_or_checkpoint.training
    changed = channels_last and any(
        p.dim() == 4 and not p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters()
    )
    model.to(device).eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.train(training)
        if changed:
            model.to(memory_format=torch.contiguous_format)


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
    tta: bool | TTA = False,
    device_data: bool | None = None,
    read_threads: int | None = None,
) -> pd.DataFrame:
    """One row per image: name, breed, species, size, Dice and IoU at original and model resolution.

    Columns `dice`, `iou` (and the counts `tp`, `fp`, `fn`) are at the original resolution;
    `dice_model`, `iou_model` (and `MODEL_COUNTS`) at the model's input resolution; `fg_fraction` is the share of pet
    pixels in the truth, `pred_fraction` in the prediction. `tta=True` averages each image's logits
    with those of its mirror image (horizontal-flip test-time augmentation); `tta=TTA(flip, scales)`
    also with the image at other sizes, resized from its original (`seglib.engine.tta`).

    A model given is moved to `device` (and stays there); its train/eval mode and memory format are put
    back when the call returns.

    `amp=None` runs the model in bf16 autocast where `default_amp` says so (CUDA, CPUs with native bf16),
    which can move the scores slightly; `amp=False` scores in fp32, exactly (`scoring_precision`).

    `num_workers=None`: none for a set of at most `SMALL_EVAL` images, else `default_num_workers`.
    Without workers, `read_threads` threads read the images (None: `default_read_threads`, none on a
    CPU); the table is the same with any number.
    `device_data=True` reads uint8 samples (`uint8_transform` at the size of the dataset's `A.Resize`)
    and normalises them on the device, False uses the dataset's transform; None takes True on CUDA when
    that gives the same samples (the transform is `eval_transform` or `uint8_transform`). The table is
    the same either way.

    In a distributed run (a process group is initialised, e.g. by `distributed.init_distributed`) rank r
    scores the images r, r + W, ... and every rank returns all rows, in dataset order: the same table as
    one process, each image scored once.
    """
    if not 0 < threshold < 1:  # 1.5 scored every image 0 and still named a better model (notebook 04)
        raise ValueError(f"evaluate: threshold={threshold!r}; give a probability in (0, 1), e.g. 0.5")
    dev = resolve_device(device)
    other_sizes: tuple[int, ...] = ()
    if as_tta(tta).scales:
        model_size = _input_size(dataset.transform, *TTA_SIZE)
        warn_unused_scales(model_size, tta, stacklevel=3)  # past torch.no_grad's wrapper: the caller's line
        other_sizes = tta_sizes(model_size, tta)
    ds = _eval_dataset(dataset, _eval_device_data(device_data, dataset.transform, dev), other_sizes)
    use_amp = default_amp(dev) if amp is None else amp
    rank, world = get_rank(), get_world_size()
    workers = _eval_workers(num_workers, len(ds), dev, world)
    if read_threads is not None and read_threads < 0:
        raise ValueError(f"evaluate: read_threads={read_threads}; give 0 or more, or None for the default")
    threads = default_read_threads(dev) if read_threads is None else read_threads  # used without workers
    loader = eval_loader(ds, batch_size, dev, workers, rank=rank, world_size=world, read_threads=threads)
    prep = BatchPrep(dev, channels_last)  # float batches are moved, uint8 ones normalised on the device
    fmt = torch.channels_last if channels_last else torch.contiguous_format  # of the TTA's other sizes
    scored: list[tuple[list[int], list[tuple[int, int]], torch.Tensor]] = []  # (indices, sizes, scores)
    skipped: list[str] = []
    # autocast_cache: each weight cast to bf16 once, not once a batch
    with (
        _scoring(model_or_checkpoint, dev, channels_last) as model,
        autocast_cache(dev),
        workers_stopped([loader]),
    ):
        try:
            for batch in progress_bar(
                loader, desc="evaluate", leave=False, disable=not progress or rank != 0
            ):
                skipped += batch["skipped"]
                if batch["image"] is None:
                    continue
                images, masks = prep(batch)
                extra = [
                    e.to(dev, non_blocking=True).contiguous(memory_format=fmt)
                    for e in batch.get("images_at", [])
                ]
                with autocast(dev, use_amp):
                    logits = forward_tta(model, images, tta, extra)  # (B, 1, h, w)
                fulls = _full_masks_to(batch["mask_full"], dev)
                sizes = [(m.shape[0], m.shape[1]) for m in fulls]
                scored.append(
                    (batch["index"].tolist(), sizes, _batch_scores(logits, masks, fulls, threshold))
                )
        except (RuntimeError, ConnectionResetError) as e:
            error, ended = e, []
            try:  # as in fit (train._epochs): torch's own report of a worker's death may come meanwhile
                ended = settled(error, [loader])
            except RuntimeError as report:
                error, ended = report, ended_workers([loader])
            if not worker_lost(error, [loader]):
                raise
            said = death_said(error, ended)
            raise RuntimeError(f"{said}. evaluate: {how_it_ended(exit_code(ended))}; run it again") from None
    rows = _gathered(_image_rows(ds, scored), skipped, world)
    release_idle_memory()  # original resolutions: buffers of every size, rarely reused (allocator.py)
    return pd.DataFrame(rows)


def _gathered(rows: list[tuple[int, dict[str, Any]]], skipped: list[str], world: int) -> list[dict[str, Any]]:
    """The rows of every rank in dataset order (one process: its own); a warning names the images left
    out as unreadable."""
    if world > 1:
        parts = all_gather_object((rows, skipped))
        rows = sorted((r for part, _ in parts for r in part), key=lambda r: r[0])
        skipped = [s for _, part in parts for s in part]
    if skipped and not rows:
        raise CorruptSampleError(
            f"evaluate: all {len(skipped)} image(s) are unreadable, nothing to score: "
            f"{'; '.join(skipped[:5])}; replace them, or point at another split"
        )
    if skipped:
        warnings.warn(
            f"evaluate: {len(skipped)} unreadable image(s) left out: {'; '.join(skipped[:5])}",
            stacklevel=4,  # past evaluate and torch.no_grad's wrapper: the caller's line
        )
    return [row for _, row in rows]


def _eval_workers(num_workers: int | None, n_images: int, device: torch.device, world_size: int) -> int:
    """`num_workers` as given; None: 0 for a share of at most `SMALL_EVAL` images, else the default."""
    if num_workers is not None:
        return num_workers
    return 0 if math.ceil(n_images / world_size) <= SMALL_EVAL else default_num_workers(device)


def _pipeline(transform: Any) -> list[tuple[type, dict[str, Any]]] | None:
    """A Compose's children as (type, arguments); None for anything else."""
    if not isinstance(transform, A.BaseCompose):
        return None
    return [(type(t), t.get_transform_init_args()) for t in transform.transforms]


# What asks `_input_size` for the model's size, and what to do where the transform does not say it.
DEVICE_DATA_SIZE = ("device_data=True", "pass device_data=False to use the dataset's own transform")
TTA_SIZE = ("tta scales", "give the dataset eval_transform(size), or evaluate without tta scales")


def _input_size(transform: Any, needs: str, hint: str) -> int:
    """The model input size: that of the (square) `A.Resize` in an Albumentations Compose; else a
    ValueError naming the option that `needs` it and the `hint`."""
    children = list(getattr(transform, "transforms", []))
    sizes = [(t.height, t.width) for t in children if isinstance(t, A.Resize)]
    if not sizes or sizes[0][0] != sizes[0][1]:
        steps = ", ".join(type(t).__name__ for t in children) or type(transform).__name__
        raise ValueError(
            f"evaluate({needs}) reads the model input size from a square A.Resize in the "
            f"dataset's transform (an Albumentations Compose), and this one ({steps}) has none; {hint}"
        )
    return sizes[0][0]


def _eval_device_data(device_data: bool | None, transform: Any, device: torch.device) -> bool:
    """`resolve_device_data`; None keeps the host path for a transform that `uint8_transform` plus the
    device's ImageNet normalisation would not reproduce (its own normalisation, crop or resize)."""
    on = resolve_device_data(device_data, device)
    if device_data is not None or not on:
        return on
    try:
        size = _input_size(transform, *DEVICE_DATA_SIZE)
    except ValueError:
        return False
    return _pipeline(transform) in (_pipeline(eval_transform(size)), _pipeline(uint8_transform(size)))


def _eval_dataset(
    dataset: SegmentationDataset, device_data: bool, sizes: tuple[int, ...] = ()
) -> SegmentationDataset:
    """A copy of `dataset` that returns full-resolution masks (and the images at `sizes`), on the device
    path uint8 samples."""
    ds = copy.copy(dataset)
    ds.return_full_mask, ds.extra_sizes = True, sizes
    if device_data:
        ds.transform = uint8_transform(_input_size(dataset.transform, *DEVICE_DATA_SIZE))
    return ds


def _full_masks_to(masks: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """The full-resolution masks on `device`, copied without blocking (from pinned memory on CUDA)."""
    if device.type == "cuda":
        masks = [m if m.is_pinned() else m.pin_memory() for m in masks]
    return [m.to(device, non_blocking=True) for m in masks]


# Score a batch's images in one pass (`segment_counts`): on CUDA, where each operation is a kernel
# launch. On the CPU image by image: one pass holds the whole batch at original resolution in its
# temporaries, which made the peak memory grow with the set (docs/performance.md).
BATCHED_SCORING = ("cuda",)

# The counts at the model's input resolution, beside `tp`, `fp` and `fn` at the original's.
MODEL_COUNTS = ("tp_model", "fp_model", "fn_model")


def _full_counts(logits: torch.Tensor, fulls: list[torch.Tensor], threshold: float) -> torch.Tensor:
    """(B, 4) int64 on the device: tp, fp, fn and valid pixels of each image's logits (1, 1, h, w)
    up-sampled on their own to its trimap's (H, W)."""

    def up(j: int) -> torch.Tensor:
        return F.interpolate(logits[j : j + 1], size=fulls[j].shape, mode="bilinear", align_corners=False)

    if logits.device.type in BATCHED_SCORING:
        ups = [up(j).flatten() for j in range(len(fulls))]
        flat = torch.cat([m.flatten() for m in fulls])
        return segment_counts(torch.cat(ups), flat, [u.numel() for u in ups], threshold)
    counts = []
    for j, full in enumerate(fulls):
        tp, fp, fn = confusion_counts(up(j)[:, 0], full[None], threshold)
        counts.append(torch.cat([torch.cat([tp, fp, fn]).long(), (full != IGNORE_INDEX).sum()[None]]))
    return torch.stack(counts)


def _batch_scores(
    logits: torch.Tensor, masks: torch.Tensor, fulls: list[torch.Tensor], threshold: float
) -> torch.Tensor:
    """(B, 11) float64 on the device, per image: tp, fp, fn, valid, dice, iou, dice_model, iou_model,
    tp_model, fp_model, fn_model. Counts and Dice are the fp32 values the per-image code gave."""
    tp_m, fp_m, fn_m = confusion_counts(logits, masks, threshold)
    full = _full_counts(logits, fulls, threshold)
    tp, fp, fn = full[:, :3].float().unbind(1)  # fp32 counts: Dice as the per-image code gave it
    scores = [dice_from_counts(tp, fp, fn), iou_from_counts(tp, fp, fn)]
    scores += [dice_from_counts(tp_m, fp_m, fn_m), iou_from_counts(tp_m, fp_m, fn_m), tp_m, fp_m, fn_m]
    return torch.cat([full.double(), torch.stack(scores, 1).double()], 1)


def _image_rows(
    ds: SegmentationDataset, scored: list[tuple[list[int], list[tuple[int, int]], torch.Tensor]]
) -> list[tuple[int, dict[str, Any]]]:
    """(dataset index, row) for each image of the batches `scored` ((indices, original sizes, scores)):
    every batch's scores copied to the host in one transfer, after the last batch (no sync per batch)."""
    if not scored:
        return []
    table = torch.cat([s for _, _, s in scored]).cpu().tolist()
    keys = [(i, size) for indices, sizes, _ in scored for i, size in zip(indices, sizes, strict=True)]
    rows = []
    for (i, (height, width)), (tp, fp, fn, valid, dice, iou, dice_m, iou_m, *model) in zip(
        keys, table, strict=True
    ):
        entry = ds.entries[i]
        row = {
            "name": entry.name,
            "breed": entry.breed,
            "species": entry.species,
            "height": height,
            "width": width,
            "dice": dice,
            "iou": iou,
            "dice_model": dice_m,
            "iou_model": iou_m,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "fg_fraction": (tp + fn) / max(int(valid), 1),
            "pred_fraction": (tp + fp) / max(int(valid), 1),
        } | dict(zip(MODEL_COUNTS, model, strict=True))
        rows.append((i, row))
    return rows


def scored_indices(df: pd.DataFrame, dataset: SegmentationDataset) -> list[int]:
    """The dataset indices of `df`'s rows (`evaluate`'s or `predict_dataset`'s table of that dataset), in
    row order. By name: images left out as unreadable are not rows, so row numbers are not indices."""
    index_of = {name: i for i, name in enumerate(dataset.names)}
    return [index_of[name] for name in df["name"]]


def worst_indices(df: pd.DataFrame, dataset: SegmentationDataset, n: int) -> list[int]:
    """The dataset indices of the `n` images with the lowest Dice in `df`, worst first (`scored_indices`)."""
    return scored_indices(df.sort_values("dice", kind="stable"), dataset)[:n]


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, median and min of the per-image Dice and IoU, and the dataset-level (micro) Dice and IoU.
    `dice_low` and `dice_high`: the 95% bootstrap interval of the mean Dice over the images
    (`intervals.mean_interval`: how far it could move were other images drawn).

    One row for the original resolution; one for the model resolution (its dataset-level scores NaN for a
    table without `MODEL_COUNTS`: one written before they were kept).
    """
    none = (np.nan, np.nan)  # no image scored (all left out as unreadable): no interval either
    orig, model = (mean_interval(df.dice), mean_interval(df.dice_model)) if len(df) else (none, none)
    rows = [
        {
            "resolution": "original",
            "images": len(df),
            "dice_mean": df.dice.mean(),
            "dice_low": orig[0],
            "dice_high": orig[1],
            "dice_median": df.dice.median(),
            "dice_min": df.dice.min(),
            "iou_mean": df.iou.mean(),
            "iou_median": df.iou.median(),
            "iou_min": df.iou.min(),
            **_micro_scores(df, ("tp", "fp", "fn")),
        },
        {
            "resolution": "model",
            "images": len(df),
            "dice_mean": df.dice_model.mean(),
            "dice_low": model[0],
            "dice_high": model[1],
            "dice_median": df.dice_model.median(),
            "dice_min": df.dice_model.min(),
            "iou_mean": df.iou_model.mean(),
            "iou_median": df.iou_model.median(),
            "iou_min": df.iou_model.min(),
            **_micro_scores(df, MODEL_COUNTS),
        },
    ]
    return pd.DataFrame(rows).set_index("resolution")


def _micro_scores(df: pd.DataFrame, counts: tuple[str, str, str]) -> dict[str, float]:
    """`dice_dataset` and `iou_dataset` from the summed columns `counts` (tp, fp, fn); NaN where `df`
    lacks them."""
    if not set(counts) <= set(df.columns):
        return {"dice_dataset": np.nan, "iou_dataset": np.nan}
    tp, fp, fn = (torch.tensor(df[c].to_numpy(dtype=np.float64)) for c in counts)
    return {"dice_dataset": float(dataset_dice(tp, fp, fn)), "iou_dataset": float(dataset_iou(tp, fp, fn))}


def _as_rgb_array(image: np.ndarray | Image.Image | str | Path) -> np.ndarray:
    """A file or PIL image upright (EXIF orientation applied, as viewers show it); an array as it is."""
    if isinstance(image, str | Path):
        return np.asarray(open_rgb(image, upright=True))
    if isinstance(image, Image.Image):
        return np.asarray(rgb_image(upright_image(image)))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"image must be uint8 HxWx3 RGB, got dtype {arr.dtype} shape {arr.shape}")
    return arr


def model_image_size(model: nn.Module, image_size: int | None = None) -> int:
    """`image_size`, else the size `model` was trained at (`TRAINED_SIZE`, set by `load_model` and `fit`),
    else 256 (the original's)."""
    if image_size is not None:
        return image_size
    return int(getattr(model, TRAINED_SIZE, None) or 256)


@torch.no_grad()  # inference: no graph (its saved activations held every viewed image's memory)
def predict_logits(
    model: nn.Module,
    image: np.ndarray | Image.Image | str | Path,
    image_size: int | None = None,
    device: str = "auto",
    tta: bool | TTA = False,
) -> torch.Tensor:
    """Logits (H, W) at the image's original size, on the CPU (`tta`: averaged with the mirror image's,
    and with a TTA's scales the image's at other sizes, as `evaluate` does). The model sees the image at
    `image_size` (None: the size it was trained at, `model_image_size`)."""
    dev = resolve_device(device)
    image_size = model_image_size(model, image_size)
    warn_unused_scales(image_size, tta, stacklevel=3)  # past torch.no_grad's wrapper: the caller's line
    rgb = _as_rgb_array(image)
    x, *extra = (
        eval_transform(s)(image=rgb)["image"].unsqueeze(0).to(dev)
        for s in (image_size, *tta_sizes(image_size, tta))
    )
    training = model.training
    try:
        logits = forward_tta(model.to(dev).eval(), x, tta, extra)
    finally:
        model.train(training)  # a caller's model scored mid-training goes on training as it was
    up = F.interpolate(logits, size=rgb.shape[:2], mode="bilinear", align_corners=False)
    return up[0, 0].cpu()


def predict(
    model: nn.Module,
    image: np.ndarray | Image.Image | str | Path,
    image_size: int | None = None,
    threshold: float = 0.5,
    device: str = "auto",
    tta: bool | TTA = False,
) -> np.ndarray:
    """The predicted mask (uint8 0/1, HxW) at the image's original size (`image_size` None: the model's own,
    as `predict_logits` takes it)."""
    logits = predict_logits(model, image, image_size, device, tta)
    return foreground(logits, threshold).numpy().astype(np.uint8)

"""What `evaluate` and `predict` share: the checkpoint's split and model, and how masks are made (TTA,
threshold) as the checkpoint's run validated."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from ..data import SegmentationDataset
from ..engine import checkpoint_image_size, checkpoint_threshold, load_checkpoint, load_model
from ..engine.loaders import checkpoint_split
from ..engine.tta import TTA, UnusedScaleWarning, tta_label, warn_unused_scales
from .train import given_data_exists


def tta_of(a: argparse.Namespace, size: int, config: dict[str, Any]) -> TTA:
    """--tta (else the run's `config`'s, as it validated) and --tta_scales as one TTA for a model input of
    `size`; a bad scale exits with the reason, a scale that adds no size is named in a warning
    (`scales_said` keeps it to this one)."""
    flip = bool(config.get("tta", False)) if a.tta is None else a.tta
    try:
        tta = TTA(flip=flip, scales=tuple(a.tta_scales))
    except ValueError as e:
        sys.exit(f"--tta_scales: {e}")
    warn_unused_scales(size, tta, "--tta_scales")
    return tta


@contextmanager
def scales_said() -> Iterator[None]:
    """A region without `UnusedScaleWarning`: `_tta` said it once; every image's prediction would again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedScaleWarning)
        yield


def split_and_model(a: argparse.Namespace) -> tuple[SegmentationDataset, nn.Module, int, dict[str, Any]]:
    """The --split of the checkpoint's data (or of --data_path), read as its run read it, the model, its
    image size and its run's config: the checkpoint file read once."""
    given_data_exists(a.data_path, a.dataset)
    ckpt = load_checkpoint(a.model_path)
    size = a.image_size or checkpoint_image_size(ckpt)
    skip = {} if a.on_corrupt is None else {"on_corrupt": a.on_corrupt}
    ds = checkpoint_split(ckpt, a.split, a.data_path, a.dataset, image_size=size, limit=a.limit, **skip)
    return ds, load_model(a.model_path, checkpoint=ckpt), size, ckpt.get("config", {})


def how(threshold: float, size: int, tta: TTA) -> str:
    """How masks were made: what a printout says beside its numbers."""
    return f"at threshold {threshold:g} (the model's input {size} px, TTA {tta_label(tta)})"


def threshold_of(a: argparse.Namespace, config: dict[str, Any]) -> float:
    """--threshold, else the one the run validated (and chose best.pt) at; 0.5 where it has none."""
    return a.threshold if a.threshold is not None else checkpoint_threshold({"config": config})

"""Predictions you can open: per image, the mask at the original size as a 0/255 PNG (a 0/1 PNG looks
black), an overlay PNG and a row of `predictions.csv` (name, size, the share predicted as object, and
Dice and IoU at the original resolution when the truth is known).

The command line's `predict`, the viewer's upload box and notebook 07 all predict through here.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from ..atomic import NAME_MAX
from ..data import (
    CorruptSampleError,
    SegmentationDataset,
    open_rgb,
    reason_unread,
    rgb_image,
    stored_and_upright_size,
    upright_for,
    upright_image,
)
from ..data.masks import mask_size_message, shown
from ..metrics import IGNORE_INDEX, confusion_counts, dice_from_counts, foreground, iou_from_counts
from .evaluate import predict_logits
from .io import atomic_write, atomic_write_csv
from .progress import progress_bar
from .tta import TTA

__all__ = [
    "PREDICTION_COLOUR",
    "FALSE_POSITIVE_COLOUR",
    "FALSE_NEGATIVE_COLOUR",
    "Prediction",
    "overlay",
    "predict_dataset",
    "predict_files",
    "predict_image",
    "save_prediction",
]

PREDICTION_COLOUR = (255, 170, 0)  # orange: the viewer's prediction colour too
# A prediction against the truth: false positives red (Paul Tol's), false negatives blue (Okabe and Ito's),
# apart from each other, from the orange and from the image also for red-green and blue-yellow colour
# blindness (simulated: docs/design.md). The error maps of the figures and the viewer take them.
FALSE_POSITIVE_COLOUR = (204, 51, 17)
FALSE_NEGATIVE_COLOUR = (0, 114, 178)


def overlay(image: np.ndarray, layers: list[tuple[np.ndarray, Any]], opacity: float = 0.45) -> np.ndarray:
    """Blend boolean masks onto an RGB image: each (mask, RGB colour) at `opacity`. Returns uint8 HxWx3."""
    out = image.astype(np.float32)
    for mask, colour in layers:
        out[mask] = (1 - opacity) * out[mask] + opacity * np.asarray(colour, np.float32)
    return out.clip(0, 255).astype(np.uint8)


@dataclass
class Prediction:
    """One image's prediction: the image and the logits, both at the image's original size."""

    name: str
    image: np.ndarray  # uint8 HxWx3
    logits: torch.Tensor  # float HxW, on the CPU

    def mask(self, threshold: float = 0.5) -> np.ndarray:
        """uint8 HxW: 1 object, 0 background."""
        return foreground(self.logits, threshold).numpy().astype(np.uint8)

    def overlay(self, threshold: float = 0.5, opacity: float = 0.45) -> np.ndarray:
        """The image with the predicted object in orange (uint8 HxWx3)."""
        return overlay(self.image, [(self.mask(threshold) == 1, PREDICTION_COLOUR)], opacity)

    def cutout(self, threshold: float = 0.5) -> np.ndarray:
        """The image with the background transparent: uint8 HxWx4, alpha 255 on the object, 0 elsewhere."""
        return np.dstack([self.image, self.mask(threshold) * 255])

    def row(self, threshold: float = 0.5, truth: np.ndarray | None = None) -> dict[str, Any]:
        """name, width, height, pred_fraction; with the truth (uint8 0/1 HxW, IGNORE_INDEX left out) also
        fg_fraction, dice and iou at the original resolution."""
        h, w = self.logits.shape
        row: dict[str, Any] = {"name": self.name, "width": w, "height": h}
        if truth is None:
            row["pred_fraction"] = float(self.mask(threshold).mean())
            return row
        if truth.shape != (h, w):
            raise ValueError(
                f"{self.name}: the truth mask is {truth.shape[1]}x{truth.shape[0]}, its image {w}x{h}; "
                "a mask must have its image's size"
            )
        t = torch.tensor(np.asarray(truth))  # a copy: a read-only array (PIL's) makes torch warn
        tp, fp, fn = (c.item() for c in confusion_counts(self.logits[None], t[None], threshold))
        counts = torch.tensor(tp), torch.tensor(fp), torch.tensor(fn)
        valid = max(int((t != IGNORE_INDEX).sum()), 1)
        row |= {"pred_fraction": (tp + fp) / valid, "fg_fraction": (tp + fn) / valid}
        row |= {"dice": float(dice_from_counts(*counts)), "iou": float(iou_from_counts(*counts))}
        return row


def predict_image(
    model: nn.Module,
    image: np.ndarray | Image.Image | str | Path,
    name: str | None = None,
    image_size: int | None = None,
    device: str = "auto",
    tta: bool | TTA = False,
) -> Prediction:
    """`model`'s prediction for one image (an RGB array, a PIL image or a file) at its original size; a
    file or PIL image upright, as viewers show it (EXIF orientation applied)."""
    if isinstance(image, str | Path):
        name = name or Path(image).stem
        image = open_rgb(image, upright=True)
    elif isinstance(image, Image.Image):
        image = upright_image(image)
    rgb = np.asarray(rgb_image(image)) if isinstance(image, Image.Image) else np.asarray(image)
    logits = predict_logits(model, rgb, image_size, device, tta)
    return Prediction(name or "image", rgb, logits)


def save_prediction(
    pred: Prediction,
    out_dir: str | Path,
    threshold: float = 0.5,
    truth: np.ndarray | None = None,
    cutout: bool = False,
) -> dict[str, Any]:
    """Write NAME_mask.png (0/255, the original size) and NAME_overlay.png into `out_dir` (with `cutout`
    also NAME_cutout.png, `Prediction.cutout`); return the CSV row (`Prediction.row` and the file names)."""
    _check_name_lengths({pred.name: pred.name}, Path(out_dir), cutout)
    return _save(pred, Path(out_dir), threshold, truth, cutout)


def _save(
    pred: Prediction, out: Path, threshold: float, truth: np.ndarray | None, cutout: bool
) -> dict[str, Any]:
    """`save_prediction` for the batch functions, whose names were all checked before the first."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"mask": pred.mask(threshold) * 255, "overlay": pred.overlay(threshold)}
    if cutout:
        files["cutout"] = pred.cutout(threshold)
    for kind, pixels in files.items():
        with atomic_write(out / f"{pred.name}_{kind}.png") as f:
            Image.fromarray(pixels).save(f, format="PNG")
    return pred.row(threshold, truth) | {kind: f"{pred.name}_{kind}.png" for kind in files}


def predict_files(
    model: nn.Module,
    files: Sequence[str | Path],
    out_dir: str | Path,
    image_size: int | None = None,
    threshold: float = 0.5,
    device: str = "auto",
    tta: bool | TTA = False,
    truths: dict[str, Path] | None = None,
    read_truth: Callable[[Path], np.ndarray] | None = None,
    cutout: bool = False,
    on_corrupt: str = "raise",
    progress: bool = True,
) -> pd.DataFrame:
    """Predict each image file: masks and overlays (and cutouts) in `out_dir`, and predictions.csv.

    `truths` maps an image's stem to its mask file, which `read_truth(path)` reads into a uint8 0/1
    mask; an image with one gets Dice and IoU. Images are read upright (EXIF orientation applied), unless
    the mask has the image's stored size only, as a folder data set reads them (`data.upright_for`).
    A mask that cannot be read (or whose values need `mask_values`) or that has neither size raises
    before anything is written, or with `on_corrupt="skip"` leaves its image out (the mask named in a
    warning, with both sizes where they differ); an unreadable image is always left out (named in a
    warning). `progress`: a bar over the files.
    """
    paths = [Path(f) for f in files]
    _check_unique_names(paths)
    _check_name_lengths({f.name: f.stem for f in paths}, Path(out_dir), cutout)
    _check_out_dir(Path(out_dir), [*paths, *(truths or {}).values()])
    bad_masks = _truth_read_faults(paths, truths or {}, read_truth, on_corrupt)
    faults = _truth_size_faults([f for f in paths if f not in bad_masks], truths or {}, on_corrupt)
    rows, unread, damaged = [], [], False
    todo = [f for f in paths if f not in faults and f not in bad_masks]
    for f in progress_bar(todo, desc="predict", unit="image", leave=False, disable=not progress):
        mask_file = (truths or {}).get(f.stem)
        truth = read_truth(mask_file) if mask_file is not None and read_truth is not None else None
        try:  # an array: predict_image would turn a PIL image upright, which the stored pixels are not
            image = np.asarray(open_rgb(f, upright_for(f, None if truth is None else truth.shape)))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            unread.append(f"{f.name} ({reason_unread(e)})")  # one damaged photo does not stop the others
            too_large = isinstance(e, Image.DecompressionBombError)  # its reason says what to do
            damaged = damaged or not too_large
            continue
        pred = predict_image(model, image, f.stem, image_size, device, tta)
        rows.append(_save(pred, Path(out_dir), threshold, truth, cutout))
    advice = "save them again as JPEG or PNG" if damaged else ""
    _report_unread(unread, len(paths), list(faults.values()), advice, list(bad_masks.values()))
    return _write_table(rows, out_dir)


def _truth_read_faults(
    files: list[Path],
    truths: dict[str, Path],
    read_truth: Callable[[Path], np.ndarray] | None,
    on_corrupt: str,
) -> dict[Path, str]:
    """The images whose truth mask `read_truth` refuses (a damaged file, values that need `mask_values`),
    and why: read once before any prediction is written, so that a bad mask stops the run before it
    starts, or with `on_corrupt="skip"` leaves its photo out."""
    faults = {}
    for f in files:
        if read_truth is None or f.stem not in truths:
            continue
        try:
            read_truth(truths[f.stem])
        except ValueError as e:  # CorruptSampleError, MaskValueError: each names the mask file
            if on_corrupt != "skip":
                raise type(e)(f"{e}; nothing was predicted") from e
            faults[f] = str(e).split("; ")[0]
    return faults


def _truth_size_faults(files: list[Path], truths: dict[str, Path], on_corrupt: str) -> dict[Path, str]:
    """The images whose truth mask has neither their stored nor their upright size, from the files'
    headers, and why (the mask file, both sizes): an error before any prediction is written, unless
    `on_corrupt` is "skip"."""
    faults = {}
    for f in files:
        if f.stem not in truths:
            continue
        try:
            with Image.open(truths[f.stem]) as m:
                mask_shape = (m.height, m.width)
            stored, shown = stored_and_upright_size(f)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            continue  # reading the file says what is wrong with it, naming it
        if mask_shape not in (stored, shown):
            if on_corrupt != "skip":
                message = mask_size_message(shown, mask_shape, f, truths[f.stem])
                raise CorruptSampleError(f"{message} (--on_corrupt skip); nothing was predicted")
            # skipped as asked: the photo reads fine, its mask is what to fix (`_report_unread` says so)
            (mh, mw), (h, w), (sh, sw) = mask_shape, shown, stored
            turned = f" (or {sw}x{sh} as stored, before its EXIF turn)" if stored != shown else ""
            faults[f] = f"{truths[f.stem]} is {mw}x{mh}, its photo {f.name} {w}x{h}{turned}"
    return faults


def _report_unread(
    unread: list[str],
    n: int,
    mismatched: Sequence[str] = (),
    advice: str = "save them again as JPEG or PNG",
    bad_masks: Sequence[str] = (),
) -> None:
    """A warning naming the files that could not be read (`advice`: what to do; "" where each one's reason
    says it), the masks of another size than their photo (`mismatched`) and the masks that could not be
    read as masks (`bad_masks`), each photo left out; an error when none is left."""
    said = []  # (what, which are left out, what to do)
    if unread:
        more = "; ..." if len(unread) > 3 else ""
        what = f"{len(unread)} of {n} image(s) could not be read: {'; '.join(unread[:3])}{more}"
        said.append((what, "they are left out", advice))
    if mismatched:
        more = "; ..." if len(mismatched) > 3 else ""
        what = f"{len(mismatched)} of {n} mask file(s) have the wrong size: {'; '.join(mismatched[:3])}{more}"
        todo = "resize each mask to its photo's size with nearest-neighbour sampling"
        said.append((what, "their photos are left out", todo))
    if bad_masks:
        more = "; ..." if len(bad_masks) > 3 else ""
        what = f"{len(bad_masks)} of {n} mask file(s) could not be read as masks: {'; '.join(bad_masks[:3])}{more}"
        said.append((what, "their photos are left out", "replace each, or give --mask_values"))
    if not said:
        return
    if len(unread) + len(mismatched) + len(bad_masks) == n:
        raise ValueError(
            "; ".join(what + (f" ({todo})" if todo else "") for what, _, todo in said)
            + "; nothing was predicted"
        )
    warnings.warn(
        "; ".join(f"{what}; {left}" + (f" ({todo})" if todo else "") for what, left, todo in said),
        stacklevel=3,
    )


def _check_unique_names(files: list[Path]) -> None:
    """Outputs are named after the file's stem: two files of one stem would write over each other."""
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise ValueError(
                f"{seen[f.stem]} and {f} would both write {f.stem}_mask.png; rename one of them, or "
                "predict them into different --output_dir folders"
            )
        seen[f.stem] = f


def _name_max(folder: Path) -> int:
    """The most bytes a file name may have in `folder` (before it is made: in its nearest existing parent,
    where it will be made); NAME_MAX where the system does not say."""
    existing = next((d for d in (folder, *folder.absolute().parents) if d.is_dir()), None)
    try:
        limit = os.pathconf(existing or ".", "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf on Windows; a limit it does not know
        return NAME_MAX
    return limit if limit > 0 else NAME_MAX


def _check_name_lengths(stems: dict[str, str], out: Path, cutout: bool) -> None:
    """ValueError naming the inputs ({shown name: output stem}) whose output files' names would pass
    `out`'s limit: found before anything is written, not at the first of them, halfway through."""
    limit = _name_max(out)
    kinds = ("mask", "overlay", "cutout") if cutout else ("mask", "overlay")  # as save_prediction writes
    longest = max((f"_{kind}.png" for kind in kinds), key=lambda s: len(os.fsencode(s)))
    too_long = []
    for shown_as, stem in stems.items():
        over = len(os.fsencode(stem + longest)) - limit
        if over > 0:
            too_long.append(f"{shown_as} ({over} bytes over)")
    if too_long:
        raise ValueError(
            f"{out}: {len(too_long)} image name(s) are too long for their output files (NAME{longest} "
            f"would pass the folder's limit of {limit} bytes a file name): {shown(too_long)}; rename them "
            "that many bytes shorter, or more; nothing was written"
        )


def _check_out_dir(out: Path, read: Iterable[Path]) -> None:
    """ValueError if `out` is a folder that the images or masks being predicted (`read`) lie in: NAME_mask.png
    there replaces the true mask of that name (a folder data set's masks/), and is read as data next time."""
    here = out.resolve()
    if here in {folder.resolve() for folder in {p.parent for p in read}}:
        raise ValueError(
            f"{out} holds the images or masks being predicted (their masks would replace true masks "
            f"there); write elsewhere, e.g. {out.parent / 'predictions'}; nothing was written"
        )


def predict_dataset(
    model: nn.Module,
    dataset: SegmentationDataset,
    out_dir: str | Path,
    image_size: int | None = None,
    threshold: float = 0.5,
    device: str = "auto",
    tta: bool | TTA = False,
    indices: Iterable[int] | None = None,
    cutout: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Predict images of a data set (all, or `indices`) with their truth: masks, overlays and
    predictions.csv with Dice and IoU, in `out_dir`. `progress`: a bar over the images."""
    indices = list(range(len(dataset)) if indices is None else indices)
    names = [dataset.entries[i].name for i in indices]
    _check_name_lengths({n: n for n in names}, Path(out_dir), cutout)
    _check_out_dir(Path(out_dir), [p(n) for n in names for p in (dataset.image_path, dataset.trimap_path)])
    rows, unread = [], []
    for i in progress_bar(indices, desc="predict", unit="image", leave=False, disable=not progress):
        name = dataset.entries[i].name
        try:
            image, truth = dataset.load_image(i), dataset.load_mask(i)
        except CorruptSampleError as e:
            if dataset.on_corrupt != "skip":
                raise
            unread.append(f"{name} ({e})")
            continue
        pred = predict_image(model, image, name, image_size, device, tta)
        rows.append(_save(pred, Path(out_dir), threshold, truth, cutout))
    _report_unread(unread, len(indices), advice="")  # each error says what to do (a mask's size, say)
    return _write_table(rows, out_dir)


# predictions.csv's columns, in this order whichever row comes first (a photo without its truth has no
# fg_fraction, dice or iou; its row first put them after the file columns)
TABLE_COLUMNS = ("name", "width", "height", "pred_fraction", "fg_fraction", "dice", "iou", "mask", "overlay")


def _write_table(rows: list[dict[str, Any]], out_dir: str | Path) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df = df[[c for c in TABLE_COLUMNS if c in df] + [c for c in df if c not in TABLE_COLUMNS]]  # then cutout
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_csv(df, Path(out_dir) / "predictions.csv")
    return df

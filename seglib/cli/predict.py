"""`python -m seglib predict`: masks, overlays and a CSV row for each image of a split, a file or a
folder (scored against its true masks where given)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..data import (
    find_masks,
    image_files,
    parse_mask_values,
    read_folder_mask,
    subfolders,
    trimap_to_mask,
    unpaired_masks,
)
from ..data.masks import shown
from ..engine import checkpoint_image_size, load_checkpoint, load_model, worst_indices
from ..engine.export import EXPORTED_SUFFIXES, load_exported
from ..engine.predictions import predict_dataset, predict_files
from ..plots import save_prediction_figures
from .scoring import how, scales_said, split_and_model, threshold_of, tta_of


def run(a: argparse.Namespace) -> None:
    if a.input is not None:
        _predict_files(a)
        return
    ds, model, size, config = split_and_model(a)
    tta, out, threshold = tta_of(a, size, config), Path(a.output_dir), threshold_of(a, config)
    with scales_said():
        df = predict_dataset(model, ds, out, size, threshold, a.device, tta, cutout=a.cutout)
        # of the images predicted, not those left out as unreadable
        worst = worst_indices(df, ds, a.num_figures)
        save_prediction_figures(model, ds, worst, out / "figures", size, threshold, a.device, tta)
    which = (
        f"the first {len(ds)} images of the {a.split} split (--limit)" if a.limit else f"the {a.split} split"
    )
    print(
        f"{len(df)} masks and overlays of {which} {how(threshold, size, tta)} (mean Dice "
        f"{df.dice.mean():.4f} at original resolution) in {out}, one row each in predictions.csv; image / "
        f"truth / prediction of the {len(worst)} worst in figures/"
    )


def _predict_model(a: argparse.Namespace) -> tuple[nn.Module, int, str, dict[str, Any]]:
    """predict --input's model, image size, device and its run's config: a checkpoint's, or an exported
    file's (.onnx, .pt2: on the CPU, the size and the threshold from its metadata)."""
    if Path(a.model_path).suffix not in EXPORTED_SUFFIXES:
        ckpt = load_checkpoint(a.model_path)  # read once: size, config, weights
        model = load_model(a.model_path, checkpoint=ckpt)
        return model, a.image_size or checkpoint_image_size(ckpt), a.device, ckpt.get("config", {})
    model = load_exported(a.model_path)
    size = a.image_size or int(model.metadata.get("image_size", 0))
    if not size:
        sys.exit(f"{a.model_path} does not say the size its model was trained at; pass --image_size")
    saved = model.metadata.get("threshold")  # files of older seglib versions have none: 0.5
    return model, size, "cpu", {"threshold": float(saved)} if saved else {}


def _masks_beside(files: list[Path]) -> tuple[list[Path], dict[str, Path]]:
    """--input's photos, and the masks among its files: NAME_mask.* beside a photo NAME.*, by NAME."""
    stems = {f.stem for f in files}
    beside = {
        f.stem[: -len("_mask")]: f
        for f in files
        if f.stem.endswith("_mask") and f.stem[: -len("_mask")] in stems
    }
    masks = set(beside.values())
    return [f for f in files if f not in masks], beside


def _input_files(a: argparse.Namespace, out: Path) -> list[Path]:
    """predict --input's image files (a file, or a folder's, its subfolders not searched), checked with
    the options that go with it."""
    src = Path(a.input)
    if not src.exists():
        sys.exit(f"--input {src} does not exist")
    if a.split != "test":  # the split's default: a --split given with --input would be silently ignored
        sys.exit(f"--split {a.split} picks a split of --data_path; with --input, leave it out")
    if src.is_dir() and out.resolve() == src.resolve():  # its masks would be read as photos next time
        sys.exit(
            f"--output_dir {out} is the --input folder; write elsewhere, e.g. --output_dir {src / 'out'}"
        )
    if a.masks and not Path(a.masks).is_dir():
        sys.exit(f"--masks {a.masks} is not a folder; point it at the folder of --input's true masks")
    if not src.is_dir():
        return [src]
    files = image_files(src)
    subs = subfolders(src)
    named = f"its subfolders ({', '.join(subs[:3])}{', ...' if len(subs) > 3 else ''}) are not searched"
    if not files:
        hint = f"; {named}: point --input at one" if subs else ""
        sys.exit(f"--input {src} holds no image file that PIL opens (jpg, png, tif, bmp, webp, ...){hint}")
    if subs:
        print(f"seglib: --input {src}: {named}")
    return files


def _say_unpaired(masks: str, files: list[Path], truths: dict[str, Path], beside: bool) -> None:
    """--masks that pair with no photo stop predict; photos without a mask there, or masks of no photo
    (a name's other case, a typo), are named: both were left unscored without a word. `beside`: the masks
    lie among the photos (--masks is --input), where every other file is a photo."""
    lonely = [f.name for f in files if f.stem not in truths]
    spare = [] if beside else [p.name for p in unpaired_masks(masks, [f.stem for f in files])]
    rule = f"a photo NAME.* pairs with {'' if beside else 'NAME.* or '}NAME_mask.* (case counts)"
    if not truths:
        theirs = f"; it holds {shown(spare)}" if spare else ""
        sys.exit(f"--masks {masks}: none of the {len(files)} photos has a mask there; {rule}{theirs}")
    if lonely:
        print(f"seglib: --masks {masks}: {len(lonely)} of {len(files)} photos have no mask there, so no "
              f"Dice: {shown(lonely)}; {rule}")  # fmt: skip
    if spare:
        print(f"seglib: --masks {masks}: {len(spare)} masks pair with no photo: {shown(spare)}")


def _predict_files(a: argparse.Namespace) -> None:
    model, size, device, config = _predict_model(a)
    saved, threshold = config.get("mask_values", ""), threshold_of(a, config)
    tta, out = tta_of(a, size, config), Path(a.output_dir)
    (files, beside), truths, read = _masks_beside(_input_files(a, out)), None, None
    if beside and not a.masks:
        print(f"seglib: --input {a.input}: {len(beside)} NAME_mask files beside their photos are taken as "
              f"masks, not photos; --masks {a.input} scores against them")  # fmt: skip
    if a.masks:  # the truth of your own images: read as a folder data set reads its masks
        rule = parse_mask_values(saved if a.mask_values is None else a.mask_values)
        same = Path(a.masks).resolve() == Path(a.input).resolve()  # never a photo as its own mask
        truths = beside if same else find_masks(a.masks, [f.stem for f in files])
        _say_unpaired(a.masks, files, truths, beside=same)

        def read(path: Path) -> np.ndarray:
            return trimap_to_mask(read_folder_mask(path, rule))

    found, files = len(files), files[: a.limit] if a.limit else files
    if truths is not None:  # only the photos predicted: every truth given is read before the first
        truths = {f.stem: truths[f.stem] for f in files if f.stem in truths}
    skip = {} if a.on_corrupt is None else {"on_corrupt": a.on_corrupt}
    with scales_said():
        df = predict_files(
            model, files, out, size, threshold, device, tta, truths, read, cutout=a.cutout, **skip
        )
    scored = (
        f", {df.dice.notna().sum()} with their truth (mean Dice {df.dice.mean():.4f})" if "dice" in df else ""
    )
    which = f" of the first {len(files)} of {found} photos (--limit)" if len(files) < found else ""
    print(
        f"{len(df)} masks and overlays{which} {how(threshold, size, tta)} in {out}{scored}; one row each in "
        f"{out / 'predictions.csv'}"
    )

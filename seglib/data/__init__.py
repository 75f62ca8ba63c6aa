"""Oxford-IIIT Pet: list files, trimaps, transforms, copy-paste, the dataset, the synthetic set and the
download; and a folder of your own images and masks (folder.py: the data set; masks.py, pairs.py,
splits.py: its masks, pairs and split; demo_folder.py).

This package never imports the models or the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import SegmentationDataset
from .dataset import EmptySplitError, OxfordPetDataset, collate
from .demo_folder import make_synthetic_folder
from .device import DeviceAugment, augment_seed, normalize_table, normalize_uint8
from .download import RESOURCES, download
from .files import (
    CorruptSampleError,
    find_root,
    is_oxford_pet_root,
    open_rgb,
    reason_unread,
    rgb_image,
    stored_and_upright_size,
    upright_for,
    upright_image,
)
from .folder import FolderDataset
from .lists import BREEDS, SPLITS, ListEntry, read_list, select_split
from .masks import MaskValueError, MaskValueWarning, parse_mask_values, read_folder_mask
from .mixing import copy_paste, mixing_generator
from .own_augmentation import check_augmentation, is_augmentation, own_train_transform
from .pairs import find_masks, find_pairs, image_files, is_folder_root, subfolders, unpaired_masks
from .sampling import EpochSampler
from .splits import check_split_fractions, seeded_split, write_splits
from .stats import describe, empty_masks
from .synthetic import make_fullsize_pets, make_synthetic_pets, synthetic_pet
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_transform,
    seed_transform,
    train_transform,
    uint8_transform,
)
from .trimaps import BORDER_MODES, IGNORE_INDEX, check_trimap, trimap_to_mask

__all__ = [
    "BORDER_MODES",
    "BREEDS",
    "CorruptSampleError",
    "DATASETS",
    "DeviceAugment",
    "EmptySplitError",
    "FolderDataset",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MaskValueError",
    "MaskValueWarning",
    "RESOURCES",
    "SegmentationDataset",
    "SPLITS",
    "EpochSampler",
    "ListEntry",
    "OxfordPetDataset",
    "augment_seed",
    "auto_kind",
    "check_split_fractions",
    "check_trimap",
    "collate",
    "copy_paste",
    "describe",
    "empty_masks",
    "download",
    "eval_transform",
    "find_masks",
    "unpaired_masks",
    "find_pairs",
    "find_root",
    "image_files",
    "subfolders",
    "is_folder_root",
    "holds_data_set",
    "is_oxford_pet_root",
    "make_fullsize_pets",
    "make_synthetic_folder",
    "make_synthetic_pets",
    "mixing_generator",
    "normalize_table",
    "normalize_uint8",
    "open_rgb",
    "reason_unread",
    "rgb_image",
    "stored_and_upright_size",
    "upright_for",
    "upright_image",
    "open_split",
    "parse_mask_values",
    "read_folder_mask",
    "read_list",
    "resolve_data_root",
    "seed_transform",
    "seeded_split",
    "select_split",
    "synthetic_pet",
    "train_transform",
    "trimap_to_mask",
    "uint8_transform",
    "own_train_transform",
    "is_augmentation",
    "check_augmentation",
    "write_splits",
    "synthetic_set_root",
    "SYNTHETIC_DEMO",
    "REAL_DATA",
]

DATASETS = ("auto", "oxford-pet", "synthetic", "folder")
SYNTHETIC_SIZES = {"n_trainval": 400, "n_test": 100, "seed": 0}
SYNTHETIC_DEMO = "synthetic-pets"  # the synthetic demo set, beside the data root
REAL_DATA = "oxford-iiit-pet"  # the real data's folder (data/oxford-iiit-pet): never taken as a synthetic set


def holds_data_set(root: str | Path) -> bool:
    """True if `root` holds the real data's layout (or its oxford-iiit-pet/ folder) or a folder data set:
    what "auto" takes before it falls back to the synthetic demo set."""
    return is_oxford_pet_root(root) or is_folder_root(root)


def synthetic_set_root(data_root: str | Path, dataset: str) -> Path:
    """The synthetic set a run on `data_root` reads: `data_root` itself for "synthetic" when it holds a set
    in the official layout outside a folder named oxford-iiit-pet (the real data's), else the demo set
    beside `data_root`, generated there on first use."""
    given = _synthetic_set_at(data_root) if dataset == "synthetic" else None
    return given or Path(data_root).parent / SYNTHETIC_DEMO


def _synthetic_set_at(data_root: str | Path) -> Path | None:
    """`data_root` (or its oxford-iiit-pet/ folder) where it holds a set in the official layout and is not
    the real data's folder."""
    if is_oxford_pet_root(data_root):
        given = find_root(data_root)
        if given.name != REAL_DATA:
            return given
    return None


def auto_kind(data_root: str | Path) -> str:
    """The kind of data set "auto" takes at `data_root`: "oxford-pet", "folder" or "synthetic" (the demo
    set). It only looks; `resolve_data_root` checks the data and generates the demo set."""
    if is_oxford_pet_root(data_root):
        return "oxford-pet"
    return "folder" if is_folder_root(data_root) else "synthetic"


def resolve_data_root(
    data_root: str | Path, dataset: str = "auto", synthetic_root: str | Path = "data/synthetic-pets"
) -> tuple[Path, str]:
    """Pick the data a run uses: (root, "oxford-pet" | "synthetic" | "folder").

    "auto": the real data at `data_root` if it is there, else a folder data set (images/, masks/) if
    `data_root` is one, else the synthetic demo set at `synthetic_root` (generated on first use).
    "oxford-pet" insists on the real data; "synthetic" on a synthetic set: the one at `data_root` where it
    holds one (`synthetic_set_root`), else the demo set at `synthetic_root`; "folder" on a folder data set.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")
    if dataset == "folder" or (dataset == "auto" and auto_kind(data_root) == "folder"):
        find_pairs(data_root, on_missing="skip")  # raises with the layout when it is not a folder data set
        return Path(data_root).expanduser(), "folder"
    if dataset == "oxford-pet" or (dataset == "auto" and auto_kind(data_root) == "oxford-pet"):
        return find_root(data_root), "oxford-pet"  # raises with how-to-download when absent
    syn = (_synthetic_set_at(data_root) if dataset == "synthetic" else None) or Path(synthetic_root)
    if not is_oxford_pet_root(syn):
        # else a bare "[Errno 20] Not a directory"
        if syn.expanduser().exists() and not syn.expanduser().is_dir():
            raise NotADirectoryError(
                f"synthetic_root {str(synthetic_root)!r} is a file: the demo set is generated into a folder "
                "there; give a folder (--synthetic_root), or point data_root (--data_path) at your data"
            )
        make_synthetic_pets(syn, **SYNTHETIC_SIZES)
    return find_root(syn), "synthetic"


def open_split(
    root: str | Path,
    kind: str,
    split: str,
    transform: Callable[..., dict[str, Any]] | None = None,
    *,
    mask_values: str = "",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_seed: int = 0,
    recorded: dict[str, list[str]] | None = None,
    recorded_strict: bool = True,
    **kwargs: Any,
) -> SegmentationDataset:
    """The `split` of the data at `root`, of the kind `resolve_data_root` named: a `FolderDataset` for
    "folder" (the mask and split settings are its own), else an `OxfordPetDataset`. `kwargs` go to either
    (image_size, border, limit, return_full_mask, on_missing, on_corrupt). `recorded`: a folder run's own
    split (its checkpoint's `splits`), which the folder's split files and fractions then do not change."""
    if kind == "folder":
        return FolderDataset(
            root,
            split,
            transform,
            mask_values=mask_values,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            split_seed=split_seed,
            recorded=recorded,
            recorded_strict=recorded_strict,
            **kwargs,
        )
    return OxfordPetDataset(root, split, transform, **kwargs)

"""Oxford-IIIT Pet: list files, trimaps, transforms, copy-paste, the dataset, the synthetic set and the download.

This package never imports the models or the engine.
"""

from __future__ import annotations

from pathlib import Path

from .dataset import OxfordPetDataset, collate
from .download import RESOURCES, download
from .files import CorruptSampleError, find_root, is_oxford_pet_root, open_rgb
from .lists import BREEDS, SPLITS, ListEntry, breed_of, read_list, select_split
from .mixing import copy_paste, mixing_generator
from .sampling import EpochSampler
from .stats import describe
from .synthetic import make_synthetic_pets, synthetic_pet
from .transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, seed_transform, train_transform
from .trimaps import BORDER_MODES, IGNORE_INDEX, check_trimap, trimap_to_mask

__all__ = [
    "BORDER_MODES",
    "BREEDS",
    "CorruptSampleError",
    "DATASETS",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESOURCES",
    "SPLITS",
    "EpochSampler",
    "ListEntry",
    "OxfordPetDataset",
    "breed_of",
    "check_trimap",
    "collate",
    "copy_paste",
    "describe",
    "download",
    "eval_transform",
    "find_root",
    "is_oxford_pet_root",
    "make_synthetic_pets",
    "mixing_generator",
    "open_rgb",
    "read_list",
    "resolve_data_root",
    "seed_transform",
    "select_split",
    "synthetic_pet",
    "train_transform",
    "trimap_to_mask",
]

DATASETS = ("auto", "oxford-pet", "synthetic")
SYNTHETIC_SIZES = {"n_trainval": 400, "n_test": 100, "seed": 0}


def resolve_data_root(
    data_root: str | Path, dataset: str = "auto", synthetic_root: str | Path = "data/synthetic-pets"
) -> tuple[Path, str]:
    """Pick the data a run uses: (root, "oxford-pet" | "synthetic").

    "auto": the real data at `data_root` if it is there, else the synthetic demo set at `synthetic_root`
    (generated on first use). "oxford-pet" insists on the real data; "synthetic" on the demo set.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")
    if dataset == "oxford-pet" or (dataset == "auto" and is_oxford_pet_root(data_root)):
        return find_root(data_root), "oxford-pet"  # raises with how-to-download when absent
    syn = Path(synthetic_root)
    if not is_oxford_pet_root(syn):
        make_synthetic_pets(syn, **SYNTHETIC_SIZES)
    return find_root(syn), "synthetic"

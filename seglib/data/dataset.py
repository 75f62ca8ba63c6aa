"""`OxfordPetDataset`: the official on-disk layout, read by its list files (never by globbing)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import default_collate

from .base import SegmentationDataset
from .cache import ResizedCache
from .files import find_root, read_trimap
from .lists import ListEntry, read_list, select_split
from .transforms import eval_transform
from .trimaps import trimap_to_mask

__all__ = ["EmptySplitError", "OxfordPetDataset", "collate"]

LIST_FILES = {"train": "trainval.txt", "val": "trainval.txt", "trainval": "trainval.txt", "test": "test.txt"}


class EmptySplitError(ValueError):
    """A split with no images: training or scoring on it would only pretend to (zero steps, Dice 0)."""


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """default_collate, except that full-resolution masks (sizes differ) stay a list, and samples
    skipped as unreadable (`on_corrupt="skip"`) are left out and named in `skipped`.

    A batch whose samples were all skipped has `image` None.
    """
    skipped = [b["skipped"] for b in batch if "skipped" in b]
    batch = [b for b in batch if "skipped" not in b]
    if not batch:
        return {"image": None, "skipped": skipped}
    full = [b.pop("mask_full") for b in batch] if "mask_full" in batch[0] else None
    out = default_collate(batch)
    if full is not None:
        out["mask_full"] = full
    out["skipped"] = skipped
    return out


def _empty_split(
    split: str, list_file: Path, listed: int, in_split: int, limit: int | None, kept: int
) -> str:
    """Why `split` came out empty, step by step, and what to do."""
    steps = [f"{list_file} lists {listed} image(s)"]
    if split in ("train", "val"):
        steps.append(f"{in_split} of them in {split} (line i is val when i % 10 == 0, else train)")
    if limit is not None and limit < in_split:
        steps.append(f"limit {limit}")
    if kept:
        steps.append(f"none of those {kept} has its image and trimap file (on_missing='skip')")
    return (
        f"the {split} split has no images: {', '.join(steps)}; there is nothing to train or score on. "
        "Check that the list file is complete (one 'NAME CLASS_ID SPECIES BREED_ID' line per image), "
        "or point data_root at the whole data set (`make data`)"
    )


class OxfordPetDataset(SegmentationDataset):
    """Oxford-IIIT Pet for binary segmentation.

    Samples (`SegmentationDataset`'s) are dicts: `image` (float 3xHxW, normalised), `mask` (float
    1xHxW: 1 pet, 0 background, IGNORE_INDEX on the border when `border="ignore"`), `name`, `index`;
    with `return_full_mask=True` also `mask_full` (uint8 HxW at the original resolution). Splits:
    "train" / "val" are the lines of trainval.txt with i % 10 != 0 / == 0, "trainval" all of them,
    "test" is test.txt.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable[..., dict[str, Any]] | None = None,
        image_size: int = 256,
        border: str = "pet",
        limit: int | None = None,
        return_full_mask: bool = False,
        on_missing: str = "raise",
        on_corrupt: str = "raise",
    ) -> None:
        if on_corrupt not in ("raise", "skip"):
            raise ValueError(f"on_corrupt={on_corrupt!r}; choose 'raise' or 'skip'")
        self.on_corrupt = on_corrupt
        self.root = find_root(root)
        self.split = split
        self.border = border
        trimap_to_mask(np.full((1, 1), 2, np.uint8), border)  # validates `border` before any work
        if split not in LIST_FILES:  # before its list file is looked for
            raise ValueError(f"unknown split {split!r}; choose one of {list(LIST_FILES)}")
        list_file = self.root / "annotations" / LIST_FILES[split]
        listed = read_list(list_file)
        in_split = select_split(listed, split)
        entries = in_split[:limit] if limit is not None else in_split
        self.entries: list[ListEntry] = self._check_files(entries, on_missing)
        if not self.entries:  # before any work: an empty split trains zero steps and scores Dice 0
            raise EmptySplitError(
                _empty_split(split, list_file, len(listed), len(in_split), limit, len(entries))
            )
        self.transform = transform if transform is not None else eval_transform(image_size)
        self.return_full_mask = return_full_mask
        self._sizes: dict[int, tuple[int, int]] = {}
        self.cache: ResizedCache | None = None  # samples come pre-resized from it (see use_cache)

    def _check_files(self, entries: list[ListEntry], on_missing: str) -> list[ListEntry]:
        if on_missing not in ("raise", "skip"):
            raise ValueError(f"on_missing={on_missing!r}; choose 'raise' or 'skip'")
        missing = [
            e
            for e in entries
            if not (self.image_path(e.name).is_file() and self.trimap_path(e.name).is_file())
        ]
        if missing and on_missing == "raise":
            first = ", ".join(e.name for e in missing[:5])
            raise FileNotFoundError(
                f"{len(missing)} of {len(entries)} {self.split} entries listed in {self.root / 'annotations'} "
                f"have no image or trimap file (first: {first}); download the data again (python -m seglib "
                "download --data_path <folder>), or in Python OxfordPetDataset(..., on_missing='skip') leaves them out"
            )
        return [e for e in entries if e not in missing] if missing else entries

    # --- paths and raw files --------------------------------------------------------------------
    def image_path(self, name: str) -> Path:
        return self.root / "images" / f"{name}.jpg"

    def trimap_path(self, name: str) -> Path:
        return self.root / "annotations" / "trimaps" / f"{name}.png"

    def load_trimap(self, i: int) -> np.ndarray:
        """Trimap i as uint8 HxW with values checked to be in {1, 2, 3}."""
        return read_trimap(self.trimap_path(self.entries[i].name))

    def __repr__(self) -> str:
        return f"OxfordPetDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, border={self.border!r})"

"""A data set of your own: `images/` and `masks/` paired by file stem, with an optional `splits/`.

    ROOT/images/NAME.jpg        any format PIL opens (jpg, png, tif, bmp, webp, ...)
    ROOT/masks/NAME.png         or NAME_mask.png: 0/1, 0/255, a palette image, or RGB with one colour
    ROOT/splits/train.txt ...   optional: one NAME a line (train.txt, val.txt, test.txt); without it
                                a seeded split (val_fraction, test_fraction, split_seed)

A mask reads into the trimap convention of the Oxford set (1 object, 2 background; a folder mask has
no border band), so that the samples, the decode-once cache, evaluation at the original resolution
and the viewer treat both alike. `mask_values` says which pixels are the object ("": the one value
besides 0, or the one colour besides black): masks.py. The pairs: pairs.py; the split: splits.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .base import SegmentationDataset
from .cache import PairReader, ResizedCache
from .dataset import EmptySplitError
from .files import read_image, stored_and_upright_size, upright_beside
from .lists import SPLITS
from .masks import check_mask_size, parse_mask_values, read_folder_mask, read_folder_pair
from .pairs import find_pairs
from .splits import RECORDED, folder_split, recorded_split
from .transforms import eval_transform
from .trimaps import trimap_to_mask

__all__ = ["FolderDataset", "FolderEntry"]


@dataclass(frozen=True)
class FolderEntry:
    """One pair of a folder data set. `breed` and `species` (the Oxford set's groups, which evaluation
    tables and the viewer show) are the folder's name."""

    name: str
    image: Path
    mask: Path
    group: str

    @property
    def breed(self) -> str:
        return self.group

    @property
    def species(self) -> str:
        return self.group


class FolderDataset(SegmentationDataset):
    """Your own images and masks (module docstring: the layout), as samples like `OxfordPetDataset`'s.

    Splits: "train", "val", "test" from `splits/*.txt` when the folder has them, else `seeded_split`;
    "trainval" is train and val; `recorded` (a run's, from its checkpoint) wins over both. `split_source`
    says which, `splits` holds all three.
    """

    splits: dict[str, list[str]]  # always set: the base class's None is for a fixed split
    split_source: str

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
        mask_values: str = "",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        recorded: dict[str, list[str]] | None = None,
        recorded_strict: bool = True,
    ) -> None:
        if on_corrupt not in ("raise", "skip"):
            raise ValueError(f"on_corrupt={on_corrupt!r}; choose 'raise' or 'skip'")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
        trimap_to_mask(np.full((1, 1), 2, np.uint8), border)  # validates `border` before any work
        self.root, self.split, self.border, self.on_corrupt = (
            Path(root).expanduser(),
            split,
            border,
            on_corrupt,
        )
        self.rule = parse_mask_values(mask_values)
        # "upright": the cache of images read as stored, before EXIF orientation counted, is not reused
        self.cache_tag = "upright" + (f";mask_values={self.rule}" if not self.rule.auto else "")
        pairs = find_pairs(self.root, on_missing)
        # a run's own split: the fractions and splits/ no longer choose (`recorded_split`)
        given = recorded and recorded_split(self.root, pairs, recorded, on_missing, recorded_strict)
        self.splits, self.split_source = given or folder_split(
            self.root, pairs, on_missing, val_fraction, test_fraction, split_seed
        )
        names = self.splits["train"] + self.splits["val"] if split == "trainval" else self.splits[split]
        names = sorted(names)[:limit] if limit is not None else sorted(names)
        if not names:
            fraction = {"val": "val_fraction", "test": "test_fraction"}.get(split)
            if self.split_source == RECORDED:  # its images left out (on_missing="skip"), or none it had
                hint = "put back the images its run folder's splits/ lists, or score another split"
            elif (self.root / "splits").is_dir() or fraction is None:
                hint = f"list some in splits/{split}.txt, or remove splits/ for a seeded split"
            else:  # a seeded split given no share of the images for it
                hint = f"give {fraction} above 0 (e.g. 0.1), or list the images in splits/{split}.txt"
            raise EmptySplitError(
                f"the {split} split of {self.root} has no images ({self.split_source}: "
                f"{', '.join(f'{k} {len(v)}' for k, v in self.splits.items())}); {hint}"
            )
        self.entries = [FolderEntry(n, *pairs[n], self.root.name) for n in names]
        self._by_name = {e.name: e for e in self.entries}
        self.transform = transform if transform is not None else eval_transform(image_size)
        self.return_full_mask = return_full_mask
        self._sizes: dict[int, tuple[int, int]] = {}
        self._upright: dict[int, bool] = {}
        self.cache: ResizedCache | None = None

    def image_path(self, name: str) -> Path:
        return self._by_name[name].image

    def trimap_path(self, name: str) -> Path:
        """The mask file (read as a trimap: 1 object, 2 background)."""
        return self._by_name[name].mask

    def pair_reader(self) -> PairReader:
        return functools.partial(read_folder_pair, rule=self.rule)

    def _read_as(self, i: int) -> None:
        """Whether image i is read upright and its size so, from one read of each header (an unreadable
        image's header raises as it did)."""
        e = self.entries[i]
        try:
            with Image.open(e.mask) as m:
                shape: tuple[int, int] | None = (m.height, m.width)
        except (OSError, SyntaxError, ValueError):
            shape = None  # unreadable: reading the mask says so, naming the file
        stored, shown = stored_and_upright_size(e.image)
        self._upright[i] = upright_beside(stored, shown, shape)
        self._sizes[i] = shown if self._upright[i] else stored

    def upright(self, i: int) -> bool:
        """Whether image i is read upright (EXIF orientation applied): unless its mask has the image's
        stored size only (`files.upright_for`)."""
        if i not in self._upright:
            try:
                self._read_as(i)
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
                return True  # an unreadable image: reading it says so, naming the file
        return self._upright[i]

    def original_size(self, i: int) -> tuple[int, int]:
        """(height, width) of image i as read (upright or as stored, `upright`), from the headers."""
        if i not in self._sizes:
            self._read_as(i)
        return self._sizes[i]

    def load_image(self, i: int) -> np.ndarray:
        return read_image(self.entries[i].image, self.upright(i))

    def load_trimap(self, i: int) -> np.ndarray:
        """Mask i as a trimap (uint8 HxW: 1 object, 2 background), checked against its image's size."""
        e = self.entries[i]
        trimap = read_folder_mask(e.mask, self.rule)
        check_mask_size(self.original_size(i), trimap, e.image, e.mask)
        return trimap

    def __repr__(self) -> str:
        return f"FolderDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"

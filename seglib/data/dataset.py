"""`OxfordPetDataset`: the official on-disk layout, read by its list files (never by globbing)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from .cache import ResizedCache, build_cache
from .files import CorruptSampleError, check_pair, find_root, read_image, read_trimap
from .lists import ListEntry, read_list, select_split
from .transforms import eval_transform, seed_transform
from .trimaps import trimap_to_mask

__all__ = ["OxfordPetDataset", "collate"]

LIST_FILES = {"train": "trainval.txt", "val": "trainval.txt", "trainval": "trainval.txt", "test": "test.txt"}


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


class OxfordPetDataset(Dataset):
    """Oxford-IIIT Pet for binary segmentation.

    Samples are dicts: `image` (float 3xHxW, normalised), `mask` (float 1xHxW: 1 pet, 0 background,
    IGNORE_INDEX on the border when `border="ignore"`), `name`, `index`; with `return_full_mask=True`
    also `mask_full` (uint8 HxW at the original resolution). Splits: "train" / "val" are the lines of
    trainval.txt with i % 10 != 0 / == 0, "trainval" all of them, "test" is test.txt.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable[..., dict] | None = None,
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
        entries = select_split(read_list(self.root / "annotations" / LIST_FILES.get(split, "")), split)
        if limit is not None:
            entries = entries[:limit]
        self.entries: list[ListEntry] = self._check_files(entries, on_missing)
        self.transform = transform if transform is not None else eval_transform(image_size)
        self.return_full_mask = return_full_mask
        self._sizes: dict[int, tuple[int, int]] = {}
        self.cache: ResizedCache | None = None  # samples come pre-resized from it (see use_cache)

    def use_cache(self, cache_dir: str | Path, image_size: int) -> OxfordPetDataset:
        """Read samples from a decode-once cache at `image_size` (built on first use); returns self."""
        self.cache = build_cache(self, image_size, cache_dir)
        return self

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
                f"have no image or trimap file (first: {first}); re-download the data or pass "
                "on_missing='skip' to leave them out"
            )
        return [e for e in entries if e not in missing] if missing else entries

    # --- paths and raw files --------------------------------------------------------------------
    def image_path(self, name: str) -> Path:
        return self.root / "images" / f"{name}.jpg"

    def trimap_path(self, name: str) -> Path:
        return self.root / "annotations" / "trimaps" / f"{name}.png"

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    @property
    def breeds(self) -> list[str]:
        return [e.breed for e in self.entries]

    @property
    def species(self) -> list[str]:
        return [e.species for e in self.entries]

    def original_size(self, i: int) -> tuple[int, int]:
        """(height, width) of image i, read from its header."""
        if i not in self._sizes:
            with Image.open(self.image_path(self.entries[i].name)) as im:
                self._sizes[i] = (im.height, im.width)
        return self._sizes[i]

    def load_image(self, i: int) -> np.ndarray:
        """Image i as uint8 HxWx3 RGB at its original resolution."""
        return read_image(self.image_path(self.entries[i].name))

    def load_trimap(self, i: int) -> np.ndarray:
        """Trimap i as uint8 HxW with values checked to be in {1, 2, 3}."""
        return read_trimap(self.trimap_path(self.entries[i].name))

    def load_mask(self, i: int) -> np.ndarray:
        """Binary mask i (uint8, 0/1, or IGNORE_INDEX on the border) at the original resolution."""
        return trimap_to_mask(self.load_trimap(i), self.border)

    # --- Dataset protocol -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        # EpochSampler passes (index, seed): the augmentation then depends on nothing else.
        i, seed = key if isinstance(key, tuple) else (key, None)
        try:
            if self.cache is not None:
                image, trimap = self.cache.sample(i)
                mask = trimap_to_mask(trimap, self.border)
            else:
                image, mask = self.load_image(i), self.load_mask(i)
            name = self.entries[i].name
            check_pair(image, mask, self.image_path(name), self.trimap_path(name))
        except CorruptSampleError as e:
            if self.on_corrupt == "raise":
                raise
            return {"skipped": f"{self.entries[i].name} ({str(e).split(': ', 1)[-1][:80]})"}
        if seed is not None and isinstance(self.transform, A.BaseCompose):
            seed_transform(self.transform, seed)
        out = self.transform(image=image, mask=mask)
        sample = {
            "image": out["image"],
            "mask": torch.as_tensor(out["mask"]).float().unsqueeze(0),  # (1, H, W)
            "name": self.entries[i].name,
            "index": i,
        }
        if self.return_full_mask:
            full = self.load_mask(i) if self.cache is not None else mask
            sample["mask_full"] = torch.from_numpy(full)
        return sample

    def __repr__(self) -> str:
        return f"OxfordPetDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, border={self.border!r})"

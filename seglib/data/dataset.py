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

from .lists import ListEntry, read_list, select_split
from .transforms import eval_transform, seed_transform
from .trimaps import check_trimap, trimap_to_mask

__all__ = ["OxfordPetDataset", "CorruptSampleError", "find_root", "open_rgb", "collate", "is_oxford_pet_root"]

LIST_FILES = {"train": "trainval.txt", "val": "trainval.txt", "trainval": "trainval.txt", "test": "test.txt"}
HOW_TO_GET = (
    "download the real data with `make data` (or `python -m seglib download --data_path DIR`, "
    "or seglib.data.download(DIR)), or make the synthetic demo set with seglib.data.make_synthetic_pets(DIR)"
)


class CorruptSampleError(ValueError):
    """An image or trimap that cannot be used: unreadable, wrong values, or sizes that disagree."""


def is_oxford_pet_root(root: str | Path) -> bool:
    """True if `root` (or `root/oxford-iiit-pet`) holds the official layout."""
    try:
        find_root(root)
    except FileNotFoundError:
        return False
    return True


def find_root(root: str | Path) -> Path:
    """The folder holding `images/` and `annotations/`: `root` itself or `root/oxford-iiit-pet`."""
    root = Path(root).expanduser()
    for cand in (root, root / "oxford-iiit-pet"):
        if (cand / "annotations" / "trainval.txt").is_file() and (cand / "images").is_dir():
            return cand
    what = "does not exist" if not root.exists() else "has no images/ and annotations/trainval.txt"
    raise FileNotFoundError(f"data root {str(root)!r} {what} (nor its oxford-iiit-pet/ folder); {HOW_TO_GET}")


def open_rgb(path: str | Path) -> Image.Image:
    """Open an image whatever its real format (the release has PNG and GIF files named .jpg) as RGB."""
    with Image.open(path) as im:
        im.seek(0)  # first frame of a GIF
        return im.convert("RGB")


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
        self.cache = None  # a data.cache.ResizedCache: samples come pre-resized from it (see use_cache)

    def use_cache(self, cache_dir: str | Path, image_size: int) -> OxfordPetDataset:
        """Read samples from a decode-once cache at `image_size` (built on first use); returns self."""
        from .cache import build_cache

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
        path = self.image_path(self.entries[i].name)
        try:
            return np.asarray(open_rgb(path))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise CorruptSampleError(
                f"{path}: cannot read the image ({type(e).__name__}: {e}); the file is truncated or not an image. "
                "Re-download the data, or pass on_corrupt='skip' to leave such samples out (they are counted "
                "and reported at the end of each epoch)"
            ) from e

    def load_trimap(self, i: int) -> np.ndarray:
        """Trimap i as uint8 HxW with values checked to be in {1, 2, 3}."""
        path = self.trimap_path(self.entries[i].name)
        try:
            with Image.open(path) as im:
                trimap = np.asarray(im)
        except (OSError, SyntaxError) as e:
            raise CorruptSampleError(
                f"{path}: cannot read the trimap ({e}); re-download the data or pass on_corrupt='skip'"
            ) from e
        if trimap.ndim != 2:
            raise CorruptSampleError(f"{path}: a trimap has one channel, this file has shape {trimap.shape}")
        try:
            check_trimap(trimap, str(path))
        except ValueError as e:
            raise CorruptSampleError(str(e)) from None
        return trimap

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
            if image.shape[:2] != mask.shape:
                raise CorruptSampleError(
                    f"{self.trimap_path(self.entries[i].name)}: trimap size {mask.shape[::-1]} differs from its "
                    f"image's {image.shape[1::-1]} ({self.image_path(self.entries[i].name)}); the pair is damaged"
                )
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

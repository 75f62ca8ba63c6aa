"""`SegmentationDataset`: what the Oxford-IIIT Pet set and a folder of your own share.

Samples, the decode-once cache, original sizes and the raw images and masks at their original
resolution work the same for both: a subclass says where its files are and how a label file reads
into the trimap convention (1 object, 2 background, 3 border band), and the rest is here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .cache import PairReader, ResizedCache, build_cache
from .files import SKIP_THEM, CorruptSampleError, all_problems, read_image, read_pair
from .transforms import eval_transform, seed_transform
from .trimaps import trimap_to_mask

__all__ = ["SegmentationDataset"]


class SegmentationDataset(Dataset[dict[str, Any]]):
    """Images and binary masks. Samples are dicts: `image` (float 3xHxW, normalised), `mask` (float
    1xHxW: 1 object, 0 background, IGNORE_INDEX on the border band with `border="ignore"`), `name`,
    `index` (with `uint8_transform` both uint8, for `seglib.data.device`); with `return_full_mask=True` also `mask_full` (uint8 HxW at the original resolution);
    with `extra_sizes` also `images_at`, the image resized from its original to each of those sizes
    (`eval_transform`: multi-scale test-time augmentation).

    A subclass sets `root`, `split`, `border`, `entries` (each with `name`, `breed`, `species`),
    `transform`, `return_full_mask`, `on_corrupt`, `cache` (None) and `_sizes` ({}), and gives
    `image_path`, `trimap_path` (the label file) and `load_trimap`.
    """

    root: Path
    split: str
    border: str
    entries: list[Any]
    transform: Callable[..., dict[str, Any]]
    return_full_mask: bool
    on_corrupt: str
    cache: ResizedCache | None
    _sizes: dict[int, tuple[int, int]]
    cache_tag: str = ""  # what else the cached labels depend on (a folder's mask_values)
    extra_sizes: tuple[int, ...] = ()  # evaluation's other input sizes (`images_at`)
    # a split of its own (a folder's): the names of "train", "val", "test", and where they come from
    # (split files, a seeded split, a run's record). None where the split is fixed (the Pet's lists).
    splits: dict[str, list[str]] | None = None
    split_source: str | None = None

    # --- what a subclass gives ------------------------------------------------------------------
    def image_path(self, name: str) -> Path:
        raise NotImplementedError

    def trimap_path(self, name: str) -> Path:
        raise NotImplementedError

    def load_trimap(self, i: int) -> np.ndarray:
        """Label i as a trimap (uint8 HxW: 1 object, 2 background, 3 border band)."""
        raise NotImplementedError

    def pair_reader(self) -> PairReader:
        """What reads an image and its label from their files (the cache and `load_pair` use it): a
        module function or a partial of one, since the cache's worker processes receive it."""
        return read_pair

    # --- shared ---------------------------------------------------------------------------------
    def use_cache(self, cache_dir: str | Path, image_size: int) -> SegmentationDataset:
        """Read samples from a decode-once cache at `image_size` (built on first use); returns self.

        With on_corrupt "raise", a CorruptSampleError naming every sample the build could not read: the
        build read them all, so they are said at once, not one per run at the step that meets each."""
        self.cache = build_cache(self, image_size, cache_dir)
        if self.on_corrupt == "raise" and self.cache.errors:
            raise CorruptSampleError(
                all_problems(
                    list(self.cache.errors.values()), f"the {len(self)} {self.split} samples", SKIP_THEM
                )
            )
        return self

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

    def load_mask(self, i: int) -> np.ndarray:
        """Binary mask i (uint8, 0/1, or IGNORE_INDEX on the border) at the original resolution."""
        return trimap_to_mask(self.load_trimap(i), self.border)

    def load_pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image i and its trimap at the original resolution, checked (CorruptSampleError otherwise)."""
        name = self.entries[i].name
        return self.pair_reader()(self.image_path(name), self.trimap_path(name))

    # --- Dataset protocol -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        # EpochSampler passes (index, seed): the augmentation then depends on nothing else.
        i, seed = key if isinstance(key, tuple) else (key, None)
        try:
            image, trimap = self.cache.sample(i) if self.cache is not None else self.load_pair(i)
        except CorruptSampleError as e:
            if self.on_corrupt == "raise":
                raise
            return {"skipped": f"{self.entries[i].name} ({str(e).split(': ', 1)[-1][:80]})"}
        mask = trimap_to_mask(trimap, self.border)
        if seed is not None and isinstance(self.transform, A.BaseCompose):
            seed_transform(self.transform, seed)
        out = self.transform(image=image, mask=mask)
        target = torch.as_tensor(out["mask"]).unsqueeze(0)  # (1, H, W)
        sample = {
            "image": out["image"],
            # uint8 images (uint8_transform) keep uint8 masks: the batch travels to the device as bytes
            "mask": target if out["image"].dtype == torch.uint8 else target.float(),
            "name": self.entries[i].name,
            "index": i,
        }
        if self.return_full_mask:
            full = self.load_mask(i) if self.cache is not None else mask
            sample["mask_full"] = torch.from_numpy(full)
        if self.extra_sizes:  # from the original image: a cached one is already resized
            original = self.load_image(i) if self.cache is not None else image
            sample["images_at"] = [_resized(s)(image=original)["image"] for s in self.extra_sizes]
        return sample


@functools.lru_cache(maxsize=8)
def _resized(size: int) -> A.Compose:
    """`eval_transform(size)`, made once per size rather than once per sample (it has no random part)."""
    return eval_transform(size)

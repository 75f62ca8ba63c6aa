"""Decode once: images and trimaps resized to a run's image size, kept as memory-mapped uint8 arrays.

Every epoch otherwise decodes each full-size JPEG and PNG again and resizes it: cheap beside a CPU
model's steps, the bottleneck for a GPU's (`python -m seglib.bench` measures both; docs/performance.md).
The cache is built with the same Albumentations Resize as the pipelines, whose Resize is a no-op on
an image already at the target size, so a cached sample is bit-identical to an uncached one.

The cache folder's name is a hash of every source file's path, size and mtime, the image size and
the cache format: a changed, added or removed file gives a new cache, so a stale one is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import albumentations as A
import numpy as np

from .files import CorruptSampleError, check_pair, read_image, read_trimap

__all__ = ["CacheSource", "ResizedCache", "build_cache", "cache_key"]

FORMAT = 1


class CacheSource(Protocol):
    """What the cache reads: which samples, and where their files are (an `OxfordPetDataset` is one)."""

    root: Path
    split: str

    @property
    def names(self) -> list[str]: ...

    def image_path(self, name: str) -> Path: ...

    def trimap_path(self, name: str) -> Path: ...


def cache_key(source: CacheSource, image_size: int) -> str:
    """A hash of the sources (path, size, mtime of every image and trimap) and the image size."""
    h = hashlib.sha256(f"seglib-cache-v{FORMAT}:{image_size}:{source.root.resolve()}".encode())
    for name in source.names:
        for p in (source.image_path(name), source.trimap_path(name)):
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:20]


@dataclass
class ResizedCache:
    """Read side: `images[i]` (S, S, 3) and `trimaps[i]` (S, S) uint8, `valid[i]` False for unreadable samples."""

    folder: Path
    names: list[str]
    images: np.ndarray
    trimaps: np.ndarray
    valid: np.ndarray
    errors: dict[str, str]

    @classmethod
    def open(cls, folder: Path) -> ResizedCache:
        meta = json.loads((folder / "meta.json").read_text())
        n, s = len(meta["names"]), meta["image_size"]
        images = np.memmap(folder / "images.u8", np.uint8, mode="r", shape=(n, s, s, 3))
        trimaps = np.memmap(folder / "trimaps.u8", np.uint8, mode="r", shape=(n, s, s))
        return cls(folder, meta["names"], images, trimaps, np.array(meta["valid"], bool), meta["errors"])

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of image and trimap i (the transforms write into their inputs)."""
        if not self.valid[i]:
            raise CorruptSampleError(self.errors[self.names[i]])
        return np.array(self.images[i]), np.array(self.trimaps[i])


def build_cache(
    source: CacheSource, image_size: int, cache_dir: str | Path, log: Callable[[str], object] = print
) -> ResizedCache:
    """Open the cache of `source` at `image_size` under `cache_dir`, building it if absent (atomically)."""
    folder = Path(cache_dir) / f"{source.split}-{image_size}-{cache_key(source, image_size)}"
    if (folder / "meta.json").is_file():
        return ResizedCache.open(folder)
    names = source.names
    n, s = len(names), image_size
    tmp = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    images = np.memmap(tmp / "images.u8", np.uint8, mode="w+", shape=(n, s, s, 3))
    trimaps = np.memmap(tmp / "trimaps.u8", np.uint8, mode="w+", shape=(n, s, s))
    resize = A.Resize(s, s)
    valid, errors = np.ones(n, bool), {}
    for i, name in enumerate(names):
        image_path, trimap_path = source.image_path(name), source.trimap_path(name)
        try:
            image, trimap = read_image(image_path), read_trimap(trimap_path)
            check_pair(image, trimap, image_path, trimap_path)
        except CorruptSampleError as e:
            valid[i], errors[name] = False, str(e)
            continue
        out = resize(image=image, mask=trimap)
        images[i], trimaps[i] = out["image"], out["mask"]
    images.flush()
    trimaps.flush()
    del images, trimaps
    meta = {"names": names, "image_size": s, "valid": valid.tolist(), "errors": errors, "format": FORMAT}
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process built it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"seglib: cached {n} {source.split} images at {s} px in {folder}")
    return ResizedCache.open(folder)

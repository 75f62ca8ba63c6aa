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
import multiprocessing
import os
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..atomic import NO_ROOM
from ..leftovers import owner_tag, partial_owner, remove_leftovers
from .files import CorruptSampleError, all_problems
from .masks import VALUES_TODO, MaskValueError
from .transforms import resize as resize_to

__all__ = ["CacheSource", "ResizedCache", "build_cache", "cache_key"]

FORMAT = 3  # 2: masks resized pixel-centred (`transforms.resize`); 3: palette and lossy 0/1 masks read anew
SAID_FROM = 1000  # images: a build that takes seconds to minutes is said before it starts, not only after
# Reads an image and its trimap from their two files, checked (CorruptSampleError otherwise).
PairReader = Callable[[Path, Path], tuple[np.ndarray, np.ndarray]]


class CacheSource(Protocol):
    """What the cache reads: which samples, where their files are and how they read (a
    `SegmentationDataset` is one: the Oxford set or a folder of your own)."""

    root: Path
    split: str
    cache_tag: str  # what else the labels depend on (a folder's mask_values); "" for none

    @property
    def names(self) -> list[str]: ...

    def image_path(self, name: str) -> Path: ...

    def trimap_path(self, name: str) -> Path: ...

    def pair_reader(self) -> Callable[[Path, Path], tuple[np.ndarray, np.ndarray]]: ...


def cache_key(source: CacheSource, image_size: int) -> str:
    """A hash of the sources (path, size, mtime of every image and trimap) and the image size."""
    h = hashlib.sha256(os.fsencode(f"seglib-cache-v{FORMAT}:{image_size}:{source.root.resolve()}"))
    if source.cache_tag:
        h.update(f"{source.cache_tag};".encode())
    for name in source.names:
        for p in (source.image_path(name), source.trimap_path(name)):
            st = p.stat()
            # fsencode: a name that is not UTF-8 (a Latin-1 disk) is its bytes, not an error
            h.update(os.fsencode(f"{p.name}:{st.st_size}:{st.st_mtime_ns};"))
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

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        # Loader workers started by spawn or forkserver (macOS, Windows) get the dataset pickled: the
        # cache goes by its folder and is mapped again there, not copied whole into every worker.
        return ResizedCache.open, (self.folder.resolve(),)  # a worker may start in another folder

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of image and trimap i (the transforms write into their inputs)."""
        if not self.valid[i]:
            raise CorruptSampleError(self.errors[self.names[i]])
        return np.array(self.images[i]), np.array(self.trimaps[i])


def build_cache(
    source: CacheSource,
    image_size: int,
    cache_dir: str | Path,
    log: Callable[[str], object] = print,
    workers: int | None = None,
) -> ResizedCache:
    """Open the cache of `source` at `image_size` under `cache_dir`, building it if absent (atomically).

    `workers` processes decode and resize (None: one per 200 images, at most 8 and the cores; the
    cache is the same for any number).

    Half-built caches of processes that no longer run (killed during a build) are removed first.
    """
    folder = Path(cache_dir) / f"{source.split}-{image_size}-{cache_key(source, image_size)}"
    remove_leftovers(folder.parent, "*.partial-*", partial_owner, log, "half-built cache")
    if folder.is_dir():
        try:
            return ResizedCache.open(folder)
        except (OSError, ValueError, KeyError, TypeError) as e:  # changed since it was built: made again
            _set_aside(folder, e, log)
    names = source.names
    n, s = len(names), image_size
    tmp = folder.with_name(f"{folder.name}.partial-{owner_tag()}")  # the tag names its builder
    shutil.rmtree(tmp, ignore_errors=True)
    sizes = {"images.u8": n * s * s * 3, "trimaps.u8": n * s * s}
    _reserve(tmp, sizes)
    pairs = [(source.image_path(name), source.trimap_path(name)) for name in names]
    procs = _workers(n, workers)
    if n >= SAID_FROM:  # what the wait before a run's first line is
        many = f"{procs} processes" if procs > 1 else "one process"
        log(f"seglib: caching {n} {source.split} images at {s} px in {folder}, once ({many})")
    try:
        bad, unclear = _fill(tmp, n, s, pairs, procs, source.pair_reader())
    except BaseException:  # Ctrl-C in a notebook: the kernel lives on, so no later build would remove it
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if unclear:  # which values are the object: every such mask at once, and no cache to reuse
        shutil.rmtree(tmp, ignore_errors=True)
        messages = [unclear[i] for i in sorted(unclear)]
        raise MaskValueError(all_problems(messages, f"the {n} {source.split} masks", VALUES_TODO))
    valid = np.ones(n, bool)
    valid[list(bad)] = False
    errors = {names[i]: bad[i] for i in sorted(bad)}
    meta = {"names": names, "image_size": s, "valid": valid.tolist(), "errors": errors, "format": FORMAT}
    try:
        (tmp / "meta.json").write_text(json.dumps(meta))
    except OSError as e:
        raise _unbuilt(tmp, sum(sizes.values()), e) from e
    try:
        os.replace(tmp, folder)
    except OSError:  # another process built it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"seglib: cached {n} {source.split} images at {s} px in {folder}")
    return ResizedCache.open(folder)


def _set_aside(folder: Path, why: Exception, log: Callable[[str], object]) -> None:
    """Remove a cache that no longer opens (a file of it deleted, cut short or edited since it was built;
    it is built atomically, so never half-built by seglib): renamed first, so that a process building the
    cache anew meanwhile finds no folder in the way, and no two processes remove one folder."""
    log(f"seglib: the cache {folder} is damaged ({why}); building it again")
    aside = folder.with_name(f"{folder.name}.partial-{owner_tag()}")  # if killed here: a leftover as any
    try:
        os.replace(folder, aside)
    except OSError:  # another process set it aside (or rebuilt it) first
        return
    shutil.rmtree(aside, ignore_errors=True)


def _reserve(tmp: Path, sizes: dict[str, int]) -> None:
    """Make `tmp` with files of `sizes` bytes (the arrays the builders map), their blocks taken on the disk
    now: a sparse file's blocks are taken as a worker writes its rows through the map, and a full disk then
    kills the process with SIGBUS. Where the disk has no room, `tmp` is removed and an OSError says what to do."""
    try:
        tmp.mkdir(parents=True)
        for name, size in sizes.items():
            with open(tmp / name, "wb") as f:
                f.truncate(size)
                _allocate(f.fileno(), size)
    except OSError as e:
        raise _unbuilt(tmp, sum(sizes.values()), e) from e


def _allocate(fd: int, size: int) -> None:
    """Take the disk blocks of the file `fd`'s first `size` bytes; where the system or the file system cannot
    (macOS, Windows, some network disks), the file stays sparse, as before. No room is an OSError."""
    if not size or not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in NO_ROOM:
            raise


def _unbuilt(tmp: Path, size: int, e: OSError) -> OSError:
    """Remove the half-built `tmp`; the OSError that says the cache of `size` bytes could not be written
    there (`e`), and what to do."""
    shutil.rmtree(tmp, ignore_errors=True)
    # a full disk wants room; a read-only or unwritable folder, or a name too long, wants another folder
    todo = "free some disk space there, set" if e.errno in NO_ROOM else "set"
    return OSError(
        e.errno,
        f"could not build the cache in {tmp.parent}, {size / 1e6:.1f} MB ({e.strerror or e}); {todo} cache_dir "
        "(--cache_dir) to a folder with room you can write to, or train without it (cache=False, --no-cache)",
    )


def _workers(n: int, workers: int | None) -> int:
    """`workers`, or one process per 200 images, at most 8 and the cores: a pool costs its start-up."""
    if workers is not None:
        return max(1, workers)
    return max(1, min(8, os.cpu_count() or 1, n // 200))


Problems = tuple[dict[int, str], dict[int, str]]  # {index: error}: unreadable samples, unclear masks


def _fill_rows(
    tmp: Path, n: int, s: int, start: int, pairs: list[tuple[Path, Path]], read: PairReader
) -> Problems:
    """Decode, check and resize samples `start`, `start + 1`, ... into the arrays under `tmp`; returns
    {index: error} for those that cannot be used, and for masks whose values are unclear."""
    images = np.memmap(tmp / "images.u8", np.uint8, mode="r+", shape=(n, s, s, 3))
    trimaps = np.memmap(tmp / "trimaps.u8", np.uint8, mode="r+", shape=(n, s, s))
    resize = resize_to(s)
    errors, unclear = {}, {}
    for i, (image_path, trimap_path) in enumerate(pairs, start):
        try:
            image, trimap = read(image_path, trimap_path)
        except CorruptSampleError as e:
            errors[i] = str(e)
            continue
        except MaskValueError as e:  # every such mask named at once by build_cache
            unclear[i] = str(e)
            continue
        out = resize(image=image, mask=trimap)
        images[i], trimaps[i] = out["image"], out["mask"]
    images.flush()
    trimaps.flush()
    return errors, unclear


def _fill(
    tmp: Path, n: int, s: int, pairs: list[tuple[Path, Path]], workers: int, read: PairReader
) -> Problems:
    """`_fill_rows` over every sample, in `workers` processes that each write their own rows."""
    if n == 0:
        return {}, {}
    if workers == 1 or n < 2:
        return _fill_rows(tmp, n, s, 0, pairs, read)
    step = -(-n // (4 * workers))  # a few chunks per worker even out the slow (large) images
    starts = range(0, n, step)
    # fork on Linux: a worker needs nothing re-imported (spawn would import albumentations in each); on
    # macOS fork is offered but unsafe (its system libraries), so the platform's default there
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        chunks = [pairs[k : k + step] for k in starts]
        parts = list(pool.map(_fill_rows, repeat(tmp), repeat(n), repeat(s), starts, chunks, repeat(read)))
    errors = {i: e for part, _ in parts for i, e in part.items()}
    return errors, {i: e for _, part in parts for i, e in part.items()}

"""The data-path rows: JPEGs to augmented batches, the original's loader against fit's, on a set of JPEGs
with the real release's spread of sizes."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ..data import OxfordPetDataset, collate, make_synthetic_pets, synthetic_pet, train_transform
from ..data import synthetic as synthetic_module
from ..engine.loaders import train_loader
from .timing import info_row, interleaved, row, row_text


def make_oxford_sized(root: Path, n: int, seed: int = 0, n_test: int | None = None) -> Path:
    """A data set of `n` trainval JPEGs and `n_test` test ones (None: a quarter of n) with the real set's
    spread of sizes (widths 150-1600 px), official layout."""
    n_test = max(2, n // 4) if n_test is None else n_test
    root = make_synthetic_pets(root, n_trainval=n, n_test=n_test, seed=seed)
    rng = np.random.default_rng(seed)
    for jpg in sorted((root / "images").glob("*.jpg")):
        w = int(np.clip(rng.lognormal(np.log(480), 0.45), 150, 1600))
        h = int(np.clip(w * rng.uniform(0.6, 1.4), 120, 1600))
        image, trimap = synthetic_pet(rng, h, w)
        Image.fromarray(image).save(jpg, quality=90)
        Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{jpg.stem}.png")
    return root


def oxford_sized_set(n: int, n_test: int | None = None, seed: int = 0, under: Path | None = None) -> Path:
    """`make_oxford_sized`'s set, made once and then reused (drawing it is slow on a CPU):
    under `under` (None: $SEGLIB_BENCH_DATA, else seglib-bench-data in the temporary folder), in a folder
    named by the arguments and by the code that draws the images, so changed code makes a new set. Made
    in a temporary folder and renamed into place: a reader never sees half a set."""
    n_test = max(2, n // 4) if n_test is None else n_test
    base = Path(
        under or os.environ.get("SEGLIB_BENCH_DATA") or Path(tempfile.gettempdir()) / "seglib-bench-data"
    )
    code = hashlib.sha256(Path(__file__).read_bytes() + Path(synthetic_module.__file__).read_bytes())
    root = base / f"oxford-sized-{n}-{n_test}-{seed}-{code.hexdigest()[:10]}"
    if root.is_dir():
        return root
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{root.name}."))
    try:
        made = make_oxford_sized(tmp / "pets", n, seed, n_test)
        try:
            made.rename(root)
        except OSError:  # made meanwhile by another process: theirs is the same set
            if not root.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _loader_rate(loader_factory: Callable[[], Iterable[dict[str, Any]]]) -> Callable[[], float]:
    def run() -> float:
        loader = loader_factory()
        t = time.perf_counter()
        n = sum(b["image"].shape[0] for b in loader)
        return n / (time.perf_counter() - t)

    return run


def data_path_rows(
    root: Path, cache: Path, dev: torch.device, reps: int, log: Callable[[str], Any]
) -> list[dict[str, Any]]:
    """JPEGs to augmented 256 px batches: the original's loader against fit's (the cache), and the cache's
    build time."""
    size, batch = 256, 8
    ref_ds = OxfordPetDataset(root, "trainval", train_transform(size))
    fast_ds = OxfordPetDataset(root, "trainval", train_transform(size))
    t0 = time.perf_counter()
    fast_ds.use_cache(cache, size)
    build = time.perf_counter() - t0
    ref_rate = _loader_rate(
        lambda: DataLoader(ref_ds, batch_size=batch, shuffle=True, num_workers=2, collate_fn=collate)
    )
    fast_rate = _loader_rate(lambda: train_loader(fast_ds, batch, dev, seed=0))  # fit's training loader
    ref, fst = interleaved(ref_rate, fast_rate, reps)
    rows = [row(f"data path {len(ref_ds)} JPEGs (150-1600 px) -> {size}px batches", "images/s", ref, fst)]
    rows.append(info_row("cache build (once per data set and size)", "s", build))
    log(row_text(rows[0]) + f" (cache built once in {build:.1f} s)")
    return rows

"""A demo folder data set made from synthetic pets, its masks in each form a folder may hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .synthetic import publish_folder, start_folder, synthetic_pet, unfinished_removed
from .trimaps import BACKGROUND

__all__ = ["make_synthetic_folder"]

_DEMO_PALETTE = [0, 0, 0, 255, 255, 255, 128, 128, 128, 230, 60, 40]  # index 3 is the object


def _save_demo_mask(path: Path, pet: np.ndarray, kind: int) -> Path:
    """Save a 0/1 pet mask in one of the four forms a folder takes: 0/255, 0/1, palette, RGB."""
    if kind == 0:
        Image.fromarray(pet * 255).save(path := path.with_suffix(".png"))
    elif kind == 1:
        Image.fromarray(pet).save(path := path.with_name(path.stem + "_mask.png"))
    elif kind == 2:
        im = Image.frombytes("P", pet.shape[::-1], (pet * 3).tobytes())
        im.putpalette(_DEMO_PALETTE)
        im.save(path := path.with_suffix(".png"))
    else:
        rgb = np.zeros((*pet.shape, 3), np.uint8)
        rgb[pet == 1] = (230, 60, 40)
        Image.fromarray(rgb).save(path := path.with_suffix(".png"))
    return path


def make_synthetic_folder(root: str | Path, n: int = 48, seed: int = 0) -> Path:
    """Write a demo folder data set of `n` synthetic pets (the generator of `make_synthetic_pets`).

    Images are JPEG and PNG; the masks take turns at the four forms a folder may hold (0/255, 0/1 as
    NAME_mask.png, a palette image, an RGB image), the border band counted as object. No splits/: the
    seeded split applies. `root` must be new or empty; deterministic for a seed. Returns `root`.
    """
    final, tmp = start_folder(root, ("images", "masks"))  # renamed at the end: never half a data set
    with unfinished_removed(final, tmp):
        rng = np.random.default_rng(seed)
        for k in range(n):
            h, w = (int(v) for v in rng.integers(160, 320, size=2))
            image, trimap = synthetic_pet(rng, h, w)
            name = f"photo_{k:03d}"
            Image.fromarray(image).save(
                tmp / "images" / (f"{name}.png" if k % 5 == 4 else f"{name}.jpg"), quality=90
            )
            _save_demo_mask(tmp / "masks" / name, (trimap != BACKGROUND).astype(np.uint8), k % 4)
        return publish_folder(tmp, final)

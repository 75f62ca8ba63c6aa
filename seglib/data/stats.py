"""Per-image facts of a data set for exploration: size, breed, species, foreground and border shares."""

from __future__ import annotations

import pandas as pd

from .dataset import OxfordPetDataset
from .trimaps import BACKGROUND, BORDER

__all__ = ["describe"]


def describe(dataset: OxfordPetDataset) -> pd.DataFrame:
    """One row per image: name, breed, species, width, height, aspect, fg_fraction, border_fraction.

    `fg_fraction` is the pet's share of the image as the original counts it (trimap 1 and 3);
    `border_fraction` is the share of the trimap's border band (3).
    """
    rows = []
    for i, e in enumerate(dataset.entries):
        trimap = dataset.load_trimap(i)
        h, w = trimap.shape
        rows.append(
            {
                "name": e.name,
                "breed": e.breed,
                "species": e.species,
                "width": w,
                "height": h,
                "aspect": w / h,
                "fg_fraction": float((trimap != BACKGROUND).mean()),
                "border_fraction": float((trimap == BORDER).mean()),
            }
        )
    return pd.DataFrame(rows)

"""Trimaps to binary masks: 1 (pet) and 3 (border) -> 1, 2 (background) -> 0.

With `border="ignore"` the border keeps its own value, IGNORE_INDEX, which the loss and the metrics
leave out: the trimap's border band is where annotators were unsure.
"""

from __future__ import annotations

import numpy as np

from ..metrics import IGNORE_INDEX  # defined where the metrics leave it out; the masks only write it

__all__ = ["IGNORE_INDEX", "BORDER_MODES", "trimap_to_mask", "check_trimap"]

BORDER_MODES = ("pet", "ignore")
PET, BACKGROUND, BORDER = 1, 2, 3


def check_trimap(trimap: np.ndarray, where: str = "trimap") -> None:
    """Raise ValueError naming `where` if the trimap has values outside {1, 2, 3}."""
    # Integers within [1, 3] are in {1, 2, 3}: two passes over the bytes. np.unique sorts, which every
    # evaluation at original resolution would pay for each image; so only a bad trimap pays for it.
    if np.issubdtype(trimap.dtype, np.integer) and (
        trimap.size == 0 or PET <= trimap.min() <= trimap.max() <= BORDER
    ):
        return
    bad = np.setdiff1d(np.unique(trimap), [PET, BACKGROUND, BORDER])
    if bad.size:
        raise ValueError(
            f"{where}: trimap values must be 1 (pet), 2 (background) or 3 (border), found {bad[:10].tolist()}; "
            "the file is not an Oxford-IIIT Pet trimap or is damaged (re-download it with `make data`)"
        )


def trimap_to_mask(trimap: np.ndarray, border: str = "pet") -> np.ndarray:
    """uint8 mask: 1 pet, 0 background, border -> 1 ("pet", the original) or IGNORE_INDEX ("ignore")."""
    if border not in BORDER_MODES:
        raise ValueError(f"unknown border={border!r}; choose one of {list(BORDER_MODES)}")
    mask = (trimap != BACKGROUND).astype(np.uint8)
    if border == "ignore":
        mask[trimap == BORDER] = IGNORE_INDEX
    return mask

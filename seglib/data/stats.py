"""Per-image facts of a data set for exploration: size, breed, species, foreground and border shares."""

from __future__ import annotations

import warnings

import pandas as pd

from .base import SegmentationDataset
from .files import SKIP_THEM, CorruptSampleError, all_problems
from .masks import VALUES_TODO, MaskValueError
from .trimaps import BACKGROUND, BORDER

__all__ = ["describe", "empty_masks"]


def describe(dataset: SegmentationDataset) -> pd.DataFrame:
    """One row per image: name, breed, species, width, height, aspect, fg_fraction, border_fraction.

    `fg_fraction` is the pet's share of the image as the original counts it (trimap 1 and 3);
    `border_fraction` is the share of the trimap's border band (3). A data set that skips unreadable
    samples (`on_corrupt="skip"`) leaves out those whose mask cannot be read, naming them in a warning;
    otherwise one error names every mask that cannot be read (and every mask whose values are unclear).
    """
    rows, unread = [], []
    problems: list[MaskValueError | CorruptSampleError] = []
    for i, e in enumerate(dataset.entries):
        try:
            trimap = dataset.load_trimap(i)
        except MaskValueError as err:  # which values are the object: for every such mask, not skipped
            problems.append(err)
            continue
        except CorruptSampleError as err:
            if dataset.on_corrupt != "skip":
                problems.append(err)
            unread.append(f"{e.name} ({err})")
            continue
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
    if problems:  # all at once: a folder's masks are fixed in one go, not one per run
        values = any(isinstance(p, MaskValueError) for p in problems)
        todo = VALUES_TODO if values else SKIP_THEM
        kind = MaskValueError if values else CorruptSampleError
        raise kind(all_problems([str(p) for p in problems], f"the {len(dataset)} masks", todo))
    if unread:
        warnings.warn(
            f"describe: {len(unread)} unreadable mask(s) left out: {'; '.join(unread[:3])}", stacklevel=2
        )
    return pd.DataFrame(rows)


def empty_masks(facts: pd.DataFrame, mask_values: str = "") -> str:
    """A sentence naming the masks of `facts` (`describe`'s table) that hold no object pixel, or "".

    An image without the object is rightly empty; many such masks more often mean `mask_values` names
    values some masks do not use (0/255 masks beside 0/1 ones), which reads them as all background.
    """
    empty = facts.loc[facts.fg_fraction == 0, "name"].tolist()
    if not empty:
        return ""
    rule = f'mask_values="{mask_values}"' if mask_values else "the masks' values as read"
    names = ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else "")
    return (
        f"{len(empty)} of {len(facts)} masks hold no object pixel under {rule} ({names}); if they show the "
        "object, their values differ from mask_values: give those too, or leave mask_values empty to read "
        "each mask's one value besides 0"
    )

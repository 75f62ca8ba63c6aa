"""A training augmentation of the user's own (an Albumentations transform) in seglib's pipeline: after the
resize and the zoom, before the normalising, and checked on every sample it gives back."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import albumentations as A
import numpy as np
from albumentations.pytorch import ToTensorV2

from .transforms import IMAGENET_MEAN, IMAGENET_STD, resize, zoom
from .trimaps import IGNORE_INDEX

__all__ = ["own_train_transform", "is_augmentation", "check_augmentation"]

# What seglib does after the user's augmentation: in it too, a sample would be normalised twice, silently
_SEGLIBS = (A.Normalize, A.ToFloat, ToTensorV2)
_LEAVE_OUT = "leave A.Normalize, A.ToFloat and ToTensorV2 out (seglib normalises after it)"


def is_augmentation(thing: object) -> bool:
    """Whether `thing` is an Albumentations transform (one or a Compose, OneOf, ...)."""
    return isinstance(thing, A.BasicTransform | A.BaseCompose)


def check_augmentation(augmentation: object) -> None:
    """A TypeError unless `augmentation` is an Albumentations transform, a ValueError where it holds
    what seglib does after it (its message goes on from the augmentation's name)."""
    if not is_augmentation(augmentation):
        raise TypeError(
            "must give an Albumentations transform (A.Compose([...]), A.HorizontalFlip(), ...), "
            f"not {augmentation!r}"
        )
    found = sorted({type(t).__name__ for t in _every_transform(augmentation) if isinstance(t, _SEGLIBS)})
    if found:
        raise ValueError(f"holds {', '.join(found)}: {_LEAVE_OUT}")


def own_train_transform(
    augmentation: A.BasicTransform | A.BaseCompose,
    image_size: int = 256,
    mask_fill: int = 0,
    scale_jitter: float = 0.0,
    name: str = "yours",
) -> A.Compose:
    """Resize, the zoom of `scale_jitter` (`train_transform`'s), `augmentation` (a user's, on the uint8 image
    and mask), a check of what it gave back (a uint8 image; a mask of 0, 1 and IGNORE_INDEX only: an
    interpolated mask is an error naming `name`), Resize again (a no-op unless it changed the size: a crop
    comes back to `image_size`), ImageNet Normalize, ToTensorV2."""
    check_augmentation(augmentation)
    checked = A.Lambda(
        image=functools.partial(_check_image, name=name),
        mask=functools.partial(_check_mask, name=name),
        p=1.0,
    )
    return A.Compose(
        [
            resize(image_size),
            *zoom(scale_jitter, mask_fill),
            augmentation,
            checked,
            resize(image_size),
            A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
            ToTensorV2(),
        ]
    )


def _every_transform(transform: Any) -> Iterator[Any]:
    yield transform
    for child in getattr(transform, "transforms", ()) if isinstance(transform, A.BaseCompose) else ():
        yield from _every_transform(child)


def _check_image(image: Any, name: str, **params: Any) -> np.ndarray:
    if not (
        isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    ):
        shown = f"{getattr(image, 'dtype', type(image).__name__)} {tuple(getattr(image, 'shape', ()))}"
        raise ValueError(
            f"augmentation {name!r} gave back an image of {shown}, not uint8 (H, W, 3): {_LEAVE_OUT}"
        )
    return image


def _check_mask(mask: Any, name: str, **params: Any) -> np.ndarray:
    stray = (mask > 1) & (mask != IGNORE_INDEX)
    if stray.any():
        values = np.unique(mask[stray])
        raise ValueError(
            f"augmentation {name!r} gave back mask values {values[:6].tolist()} besides 0, 1 and {IGNORE_INDEX}: "
            "a transform in it interpolates the mask; keep masks nearest (mask_interpolation=cv2.INTER_NEAREST, "
            "the default)"
        )
    return mask

"""The original's Albumentations pipelines. Image and mask go through the same geometric transforms."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
from albumentations.pytorch import ToTensorV2

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "resize",
    "train_transform",
    "eval_transform",
    "uint8_transform",
    "zoom",
    "seed_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize(image_size: int) -> A.Resize:
    """To `image_size` square: the image bilinear, the mask by pixel-centred nearest neighbour.

    Albumentations' default for masks (cv2's INTER_NEAREST) takes the source pixel at floor(j x scale),
    not at the output pixel's centre: every mask came out about half a pixel down and right of its image
    (the original's pipelines too), which cost even a perfect learner of the labels Dice at original
    resolution (docs/data.md). INTER_NEAREST_EXACT is centred, as torch's "nearest-exact".
    """
    return A.Resize(image_size, image_size, mask_interpolation=cv2.INTER_NEAREST_EXACT)


def train_transform(image_size: int = 256, mask_fill: int = 0, scale_jitter: float = 0.0) -> A.Compose:
    """Resize, HorizontalFlip 0.5, Rotate +-15 deg p 0.3, ColorJitter p 0.5, ImageNet Normalize, ToTensorV2.

    `mask_fill` labels the corners that rotation brings in (0 = background, or the ignore value).
    `scale_jitter` j > 0 adds, after Resize and with p 0.5, a random zoom in [1 - j, 1 + j] (each axis its
    own) and a shift of up to j / 2 of the side: pets of more sizes and positions than the 270 or 3312 images hold. It works on
    the resized image, so the decode-once cache (which stores exactly that) still gives identical samples.
    """
    return A.Compose(
        [
            resize(image_size),
            A.HorizontalFlip(p=0.5),
            *zoom(scale_jitter, mask_fill),
            A.Rotate(limit=15, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=mask_fill, p=0.3),
            A.ColorJitter(p=0.5),
            A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
            ToTensorV2(),
        ]
    )


def zoom(scale_jitter: float, mask_fill: int) -> list[A.Affine]:
    """`train_transform`'s random zoom and shift (none for `scale_jitter` 0)."""
    if scale_jitter <= 0:
        return []
    return [
        A.Affine(
            scale=(1 - scale_jitter, 1 + scale_jitter),
            translate_percent=(-scale_jitter / 2, scale_jitter / 2),
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=mask_fill,
            p=0.5,
        )
    ]


def eval_transform(image_size: int = 256) -> A.Compose:
    """Resize, ImageNet Normalize, ToTensorV2."""
    return A.Compose([resize(image_size), A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), ToTensorV2()])


def uint8_transform(image_size: int = 256) -> A.Compose:
    """Resize (`resize`) and ToTensorV2 only: uint8 3xHxW samples, normalised (and augmented) on the device
    (`seglib.data.device`). Its Resize is the other pipelines' (a no-op on a cached image)."""
    return A.Compose([resize(image_size), ToTensorV2()])


def seed_transform(transform: A.BaseCompose, seed: int) -> None:
    """Make the next call of `transform` a pure function of `seed`.

    Albumentations' own `set_random_seed` gives every child transform the SAME seed, so their coin
    flips coincide (every rotated sample would also be flipped); each child gets its own stream here,
    and so does each child of a nested Compose or OneOf (a user's augmentation).
    """
    children = list(transform.transforms)
    states = np.random.SeedSequence(seed).spawn(len(children) + 1)
    transform.set_random_seed(int(states[0].generate_state(1)[0]))
    for child, ss in zip(children, states[1:], strict=True):
        child_seed = int(ss.generate_state(1)[0])
        if isinstance(child, A.BaseCompose):
            seed_transform(child, child_seed)
        else:
            child.set_random_seed(child_seed)

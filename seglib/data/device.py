"""The data path on the device: uint8 batches in, normalised (and for training augmented) float batches out.

A batch travels as bytes, a quarter of float32's, and the per-pixel work runs where the model runs (as
timm's PrefetchLoader does). Normalisation reads a table that Albumentations' own Normalize makes from
the 256 byte values, so a normalised image is bit-identical to the host pipeline's (`eval_transform`).
Training augmentation is `train_transform`'s recipe (flip, zoom, rotation, colour jitter), done by
kornia on the whole batch with parameters per image; its random numbers are a pure function of a seed,
so a resumed run augments its batches as the uninterrupted run did.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

import albumentations as A
import numpy as np
import torch

from .transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["DeviceAugment", "normalize_table", "normalize_uint8", "augment_seed"]

# The host recipe's colour jitter: Albumentations' ColorJitter defaults (0.2 each, p 0.5).
JITTER = 0.2


def normalize_table(device: torch.device | str = "cpu") -> torch.Tensor:
    """(3, 256) float32: channel c's normalised value of each byte, as Albumentations' Normalize gives it."""
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)  # (256, 1, 3)
    table = A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)(image=ramp)["image"][:, 0, :]
    return torch.from_numpy(np.ascontiguousarray(table.T)).to(device)


def normalize_uint8(images: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 normalised by `table` (`normalize_table`), in the input's layout."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    offsets = torch.arange(3, device=images.device).view(1, 3, 1, 1) * 256
    return table.reshape(-1)[images.long() + offsets]


def augment_seed(seed: int, step: int, rank: int = 0) -> int:
    """The augmentation seed of one training step: a pure function of (run seed, global step, rank)."""
    return int(np.random.SeedSequence([seed, step, rank, 0xA06]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _kornia() -> tuple[ModuleType, ModuleType]:
    """kornia.augmentation and kornia.constants, imported on first use: only the device path needs them.
    kornia 0.8 still decorates with torch.jit.script, which torch 2.14 warns about at import."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*torch\.jit\.script", FutureWarning)
        return importlib.import_module("kornia.augmentation"), importlib.import_module("kornia.constants")


class DeviceAugment:
    """`train_transform`'s augmentation on a uint8 batch, on its device: HorizontalFlip 0.5, with
    `scale_jitter` j > 0 a zoom in [1 - j, 1 + j] and shift up to j / 2 (p 0.5), Rotate +-15 deg p 0.3,
    ColorJitter 0.2 p 0.5, then ImageNet normalisation.

    Image and mask share each image's geometry (the mask with nearest interpolation); corners the warps
    bring in are black in the image and `mask_fill` in the mask (0, or the ignore value).
    """

    def __init__(self, mask_fill: int = 0, scale_jitter: float = 0.0) -> None:
        K, constants = _kornia()
        geometric = [K.RandomHorizontalFlip(p=0.5)]
        if scale_jitter > 0:
            j = scale_jitter
            zoom = {"translate": (j / 2, j / 2), "scale": (1 - j, 1 + j)}
            geometric.append(K.RandomAffine(degrees=0.0, **zoom, p=0.5, align_corners=False))
        geometric.append(K.RandomRotation(degrees=15.0, p=0.3, align_corners=False))
        # Masks take the images' geometry with nearest interpolation: labels stay labels.
        nearest = {constants.DataKey.MASK: {"resample": constants.Resample.NEAREST, "align_corners": False}}
        self.geometry = K.AugmentationSequential(*geometric, data_keys=["input", "mask"], extra_args=nearest)
        self.colour = K.ColorJitter(JITTER, JITTER, JITTER, JITTER, p=0.5)
        self.mask_fill = mask_fill
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (B, 3, H, W) and masks (B, 1, H, W) -> normalised float images, float masks."""
        x = images.float() / 255
        # The warps pad with zeros: masks go in shifted by one, so 0 marks what they brought in.
        m = masks.float() + 1
        with torch.random.fork_rng(devices=[]):  # kornia draws its parameters from the CPU generator
            torch.random.default_generator.manual_seed(seed)
            x, m = self.geometry(x, m)
            x = self.colour(x)
        m = torch.where(m == 0, float(self.mask_fill), m - 1)
        mean, std = self._mean_std(x.device)
        return (x - mean) / std, m

    def _mean_std(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._stats:
            mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
            self._stats[device] = mean, torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        return self._stats[device]

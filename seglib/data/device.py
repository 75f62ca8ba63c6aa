"""The data path on the device: uint8 batches in, normalised (and for training augmented) float batches out.

A batch travels as bytes, a quarter of float32's, and the per-pixel work runs where the model runs (as
timm's PrefetchLoader does). Normalisation reads a table that Albumentations' own Normalize makes from
the 256 byte values, so a normalised image is bit-identical to the host pipeline's (`eval_transform`).
Training augmentation is `train_transform`'s recipe (flip, zoom, rotation, colour jitter) on the whole
batch with parameters per image, drawn on the CPU from a seed alone (so a resumed run augments its batches
as the uninterrupted run did) and sent in one asynchronous copy: the GPU path has no host sync.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Callable
from types import ModuleType

import albumentations as A
import numpy as np
import torch
import torch.nn.functional as F

from .transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["DeviceAugment", "normalize_table", "normalize_uint8", "augment_seed"]

# The host recipe's colour jitter, read from Albumentations' ColorJitter defaults: brightness, contrast and
# saturation factors and the hue shift (a share of the hue circle: in 2.0.8 any hue, +-0.5).
_HOST_JITTER = A.ColorJitter()
JITTER_RANGES = tuple(
    tuple(map(float, r))
    for r in (_HOST_JITTER.brightness, _HOST_JITTER.contrast, _HOST_JITTER.saturation, _HOST_JITTER.hue)
)


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


def _kornia() -> tuple[ModuleType, ModuleType, ModuleType]:
    """kornia's geometry transforms, conversions and enhance modules, imported on first use: only the device
    path needs them. kornia 0.8 still decorates with torch.jit.script, which torch warns about (2.14 with a
    FutureWarning, the GPU machine's 2.11 with a DeprecationWarning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*torch\.jit\.script")
        names = ("kornia.geometry.transform", "kornia.geometry.conversions", "kornia.enhance")
        return tuple(importlib.import_module(name) for name in names)  # type: ignore[return-value]


# Columns of the per-image parameter table that travels to the device in one copy.
_FLIP, _WARP, _JITTER, _BRIGHT, _CONTRAST, _SAT, _HUE, _THETA = 0, 1, 2, 3, 4, 5, 6, 7


class DeviceAugment:
    """`train_transform`'s augmentation on a uint8 batch, on its device: HorizontalFlip 0.5, with
    `scale_jitter` j > 0 a zoom in [1 - j, 1 + j] per axis and shift up to j / 2 (p 0.5), Rotate +-15 deg
    p 0.3, ColorJitter with the host's ranges (`JITTER_RANGES`) p `colour_p` (0.5; kornia's ColorJitter:
    brightness, contrast, saturation and hue in an order drawn per batch), then ImageNet normalisation.

    Image and mask share each image's geometry (zoom and rotation as one warp; the mask with nearest
    interpolation); corners the warp brings in are black in the image and `mask_fill` in the mask.

    The parameters are drawn on the CPU from the seed alone and travel in one copy. On a GPU every step
    runs on every image and `torch.where` keeps the drawn results, so the GPU never waits for the host
    (kornia's augmentation modules pick the images with a host-side test per module: a GPU sync each); on
    the CPU only the drawn images are computed (`subset`: None chooses by device; both give one result).
    """

    def __init__(
        self, mask_fill: int = 0, scale_jitter: float = 0.0, colour_p: float = 0.5, subset: bool | None = None
    ) -> None:
        self.transform, self.conversions, self.enhance = _kornia()
        self.mask_fill, self.scale_jitter, self.colour_p, self.subset = (
            mask_fill,
            scale_jitter,
            colour_p,
            subset,
        )
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def parameters(self, n: int, height: int, width: int, seed: int) -> tuple[torch.Tensor, list[int]]:
        """(n, 13) float32 per-image parameters on the CPU (flip, warp, jitter flags, the four colour
        factors, the warp's normalised inverse 2x3 matrix) and the batch's colour order: from `seed` alone."""
        g = torch.Generator().manual_seed(seed)

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(n, generator=g)

        def chance(p: float) -> torch.Tensor:
            return torch.rand(n, generator=g) < p

        flip, rotate = chance(0.5), chance(0.3)
        angle = torch.where(rotate, uniform(-15.0, 15.0), 0.0)
        j = self.scale_jitter
        zoom = chance(0.5) & (j > 0)
        # each axis its own factor, as the host's A.Affine draws them (keep_ratio False)
        scale = torch.where(
            zoom[:, None], torch.stack([uniform(1 - j, 1 + j), uniform(1 - j, 1 + j)], 1), 1.0
        )
        shift = torch.stack([uniform(-j / 2, j / 2) * width, uniform(-j / 2, j / 2) * height], 1)
        shift = torch.where(zoom[:, None], shift, 0.0)
        jitter = chance(self.colour_p)
        factors = [uniform(*r) for r in JITTER_RANGES]
        order = torch.randperm(4, generator=g).tolist()
        centre = torch.tensor([(width - 1) / 2, (height - 1) / 2]).expand(n, 2)
        forward = self.transform.get_affine_matrix2d(shift, centre, scale, angle)
        normalised = self.conversions.normalize_homography(forward, (height, width), (height, width))
        theta = torch.linalg.inv(normalised)[:, :2].reshape(n, 6)
        flags = torch.stack([flip, zoom | rotate, jitter], 1).float()
        return torch.cat([flags, torch.stack(factors, 1), theta], 1).float(), order

    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (B, 3, H, W) and masks (B, 1, H, W) -> normalised float images, float masks."""
        n, _, h, w = images.shape
        table, order = self.parameters(n, h, w, seed)
        if images.device.type == "cuda":  # one asynchronous copy: the host does not wait for the GPU
            table = table.pin_memory()
        p = table.to(images.device, non_blocking=True)
        subset = images.device.type == "cpu" if self.subset is None else self.subset
        pick = _pick_rows if subset else _where_rows
        x = images.float() / 255
        # The warp pads with zeros: masks go in shifted by one, so 0 marks what it brought in.
        m = masks.float() + 1
        flip, warp, jitter = (p[:, k] > 0 for k in (_FLIP, _WARP, _JITTER))
        x, m = pick(flip, x, lambda s: x[s].flip(-1)), pick(flip, m, lambda s: m[s].flip(-1))

        def grid(s: slice | torch.Tensor) -> torch.Tensor:
            theta = p[s, _THETA:].reshape(-1, 2, 3)
            return F.affine_grid(theta, [theta.shape[0], 1, h, w], align_corners=False)

        x = pick(warp, x, lambda s: F.grid_sample(x[s], grid(s), "bilinear", "zeros", align_corners=False))
        m = pick(warp, m, lambda s: F.grid_sample(m[s], grid(s), "nearest", "zeros", align_corners=False))
        x = pick(jitter, x, lambda s: self._jitter(x[s], p[s], order))
        m = torch.where(m == 0, float(self.mask_fill), m - 1)
        mean, std = self._mean_std(x.device)
        return (x - mean) / std, m

    def _jitter(self, x: torch.Tensor, p: torch.Tensor, order: list[int]) -> torch.Tensor:
        """kornia's ColorJitter with every image's own factors, in the batch's order."""
        e = self.enhance
        steps = (
            lambda y: e.adjust_brightness_accumulative(y, p[:, _BRIGHT]),
            lambda y: e.adjust_contrast_with_mean_subtraction(y, p[:, _CONTRAST]),
            lambda y: e.adjust_saturation_with_gray_subtraction(y, p[:, _SAT]),
            lambda y: e.adjust_hue(y, p[:, _HUE] * 2 * math.pi),
        )
        for k in order:
            x = steps[k](x)
        return x

    def _mean_std(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._stats:
            mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
            self._stats[device] = mean, torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        return self._stats[device]


def _where_rows(chosen: torch.Tensor, x: torch.Tensor, fn: Callable[[slice], torch.Tensor]) -> torch.Tensor:
    """`fn` of every image where `chosen` (B,) holds, else `x`: computed for all, no host sync."""
    return torch.where(chosen.view(-1, 1, 1, 1), fn(slice(None)), x)


def _pick_rows(
    chosen: torch.Tensor, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """`fn` of the chosen images only, written into `x` (a batch `__call__` made), the others as they are
    (reads `chosen` on the host)."""
    rows = chosen.nonzero().flatten()
    if rows.numel():
        x[rows] = fn(rows)
    return x

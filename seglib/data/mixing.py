"""Batch-level copy-paste: the pet of one image of a batch, pasted onto another.

Single-image augmentation only moves and recolours the scenes the training set has; with a few hundred
images a model also learns which backgrounds come with pets. Pasting pets onto other images' scenes
(Ghiasi et al. 2021, "Simple Copy-Paste") breaks that association. It runs on the device, on the
batch the loader made, so the decode-once cache and the loader's samples stay as they are.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["copy_paste", "mixing_generator"]


def mixing_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """A CPU generator that is a pure function of (seed, global step, rank): a resumed run pastes the same."""
    state = np.random.SeedSequence([seed, step, rank]).generate_state(2, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def copy_paste(
    images: torch.Tensor,
    masks: torch.Tensor,
    p: float,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.5, 1.0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """With probability `p` per image, paste onto it the pet of another image of the batch.

    images: float Bx3xHxW, masks: float Bx1xHxW (1 pet, 0 background, IGNORE_INDEX ignored). The pasted
    pet (its mask's pixels == 1) is flipped with p 0.5, scaled by a factor in `scale` and moved to a random
    place that keeps its box inside the image; under it the mask becomes 1. Returns new tensors; with
    fewer than 2 images or p == 0 the inputs themselves.
    """
    shapes_agree = images.shape[:1] + images.shape[2:] == masks.shape[:1] + masks.shape[2:]
    if images.ndim != 4 or masks.ndim != 4 or not shapes_agree:
        raise ValueError(
            f"copy_paste needs Bx3xHxW images and Bx1xHxW masks, got {tuple(images.shape)} "
            f"and {tuple(masks.shape)}"
        )
    if not 0 <= p <= 1:
        raise ValueError(f"copy_paste probability must be in [0, 1], got {p!r}")
    b = images.shape[0]
    if b < 2 or p == 0:
        return images, masks
    apply, source, theta = _placements(b, p, scale, generator)
    device = images.device
    source, apply = source.to(device), apply.to(device)
    grid = F.affine_grid(theta.to(device), [b, 1, *images.shape[2:]], align_corners=False)
    src_images = F.grid_sample(
        images[source], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    pet = (masks[source] == 1).float()
    src_pet = F.grid_sample(pet, grid, mode="bilinear", padding_mode="zeros", align_corners=False) > 0.5
    paste = src_pet & apply[:, None, None, None]
    out_images = torch.where(paste, src_images, images)
    out_masks = torch.where(paste, torch.ones((), dtype=masks.dtype, device=device), masks)
    if images.is_contiguous(memory_format=torch.channels_last):
        out_images = out_images.contiguous(memory_format=torch.channels_last)
    return out_images, out_masks


def _placements(
    b: int, p: float, scale: tuple[float, float], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image of a batch of `b`: whether a pet is pasted onto it, from which other image, and the
    affine map (flip, scale, place; `F.affine_grid`'s theta, Bx2x3) that puts it there."""
    lo, hi = scale
    apply = torch.rand(b, generator=generator) < p
    source = (torch.arange(b) + torch.randint(1, b, (b,), generator=generator)) % b  # never the image itself
    s = lo + (hi - lo) * torch.rand(b, generator=generator)
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    centre = (torch.rand(b, 2, generator=generator) * 2 - 1) * (1 - s)[:, None]
    # affine_grid maps output to input coordinates: x_in = flip * (x_out - cx) / s, y_in = (y_out - cy) / s.
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = flip / s
    theta[:, 0, 2] = -flip * centre[:, 0] / s
    theta[:, 1, 1] = 1 / s
    theta[:, 1, 2] = -centre[:, 1] / s
    return apply, source, theta

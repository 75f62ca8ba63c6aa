"""Progressive resizing: a run's first epochs train on smaller images, its last ones at `image_size`.

Where a budget buys few epochs (a CPU without native bf16), an epoch at 64 px costs about a third of one
at 96 px: a run that starts small takes more steps in the same minutes and ends at its full size (fastai's
progressive resizing). `TrainConfig.progressive_sizes` lists the smaller sizes, ascending; they share the
first `progressive_share` of the planned epochs equally. Batches are made at `image_size` as always (the
cache, the augmentation, validation) and shrunk on the device just before the step: images with an
anti-aliased bilinear filter, masks by nearest neighbour, so they stay 0/1 (or the ignore value).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["epoch_size", "shrink_batch"]


def epoch_size(
    sizes: list[int] | None, share: float, image_size: int, epoch: int, epochs: int, reached: int = 0
) -> int:
    """The image size epoch `epoch` (1-based) of a run planned for `epochs` trains at, never below the size
    the run has `reached` (a plan lengthened by a budget moves the small epochs' end later; a run that has
    gone on to larger images does not go back)."""
    if not sizes:
        return image_size
    small = math.floor(share * epochs)  # the epochs at the smaller sizes
    if epoch > small:
        return image_size
    return max(reached, sizes[min(len(sizes) - 1, (epoch - 1) * len(sizes) // small)])


def shrink_batch(
    images: torch.Tensor, masks: torch.Tensor, size: int, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, masks) of a batch resized to `size` x `size` (unchanged at their own size)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images, masks
    x = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    m = F.interpolate(masks.float(), size=(size, size), mode="nearest-exact")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=fmt), m.to(masks.dtype)

"""The training loss: BCEWithLogits over the pixels that are not ignored."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data import IGNORE_INDEX

__all__ = ["bce_loss"]


def bce_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean BCEWithLogits over the valid pixels; equal to nn.BCEWithLogitsLoss when nothing is ignored."""
    valid = target != ignore_index
    loss = F.binary_cross_entropy_with_logits(
        logits.float(), torch.where(valid, target, 0.0), reduction="none"
    )
    return (loss * valid).sum() / valid.sum().clamp(min=1)

"""The training loss: BCEWithLogits over the pixels that are not ignored."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..metrics import IGNORE_INDEX

__all__ = ["bce_loss", "soft_dice_loss", "build_loss", "LossFn", "LOSSES", "OWN_LOSSES"]

LOSSES = ("bce", "bce_dice")  # the original's BCEWithLogits; BCE + soft Dice
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, target) -> scalar loss
OWN_LOSSES: dict[str, LossFn] = {}  # the user's, by name (seglib.engine.register_loss)


def bce_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean BCEWithLogits over the valid pixels; equal to nn.BCEWithLogitsLoss when nothing is ignored."""
    valid = target != ignore_index
    loss = F.binary_cross_entropy_with_logits(
        logits.float(), torch.where(valid, target, 0.0), reduction="none"
    )
    return (loss * valid).sum() / valid.sum().clamp(min=1)


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX, smooth: float = 1.0
) -> torch.Tensor:
    """1 - soft Dice per image (probabilities instead of thresholded masks), averaged over the batch.

    It optimises the overlap the metric measures, where BCE weighs every pixel alike; ignored pixels
    count for neither side.
    """
    valid = (target != ignore_index).float()
    prob = torch.sigmoid(logits.float()) * valid
    truth = torch.where(target == 1, 1.0, 0.0) * valid
    dims = tuple(range(1, logits.ndim))
    inter = (prob * truth).sum(dims)
    return (1 - (2 * inter + smooth) / (prob.sum(dims) + truth.sum(dims) + smooth)).mean()


def _bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return bce_loss(logits, target) + soft_dice_loss(logits, target)


def build_loss(name: str) -> LossFn:
    """The loss `TrainConfig.loss` names: "bce" | "bce_dice" | one registered by `register_loss`."""
    losses = {"bce": bce_loss, "bce_dice": _bce_dice_loss, **OWN_LOSSES}
    if name not in losses:
        raise ValueError(
            f"unknown loss {name!r}; choose one of {list(losses)} (a loss of your own: register_loss)"
        )
    return losses[name]

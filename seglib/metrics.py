"""Dice and IoU for binary segmentation: pure tensor functions, no state.

Definitions (per image, the original's): prediction = sigmoid(logits) > threshold (`foreground`);
Dice = (2|A∩B| + smooth) / (|A| + |B| + smooth), IoU = (|A∩B| + smooth) / (|A∪B| + smooth).
With the tiny default smoothing, an image where prediction and truth are both empty scores 1
(nothing to find, nothing found). Pixels whose target is `ignore_index` count for neither.

Reductions, named as segmentation_models_pytorch names them:
- per image (`dice_per_image`), and their mean (`dice_score`, "micro-imagewise": the original's number);
- dataset-level (`dataset_dice`, "micro"): the counts of all images summed first.
"""

from __future__ import annotations

import torch

__all__ = [
    "IGNORE_INDEX",
    "SMOOTH",
    "foreground",
    "threshold_logit",
    "confusion_counts",
    "segment_counts",
    "dice_from_counts",
    "iou_from_counts",
    "dice_per_image",
    "iou_per_image",
    "dice_score",
    "iou_score",
    "dataset_dice",
    "dataset_iou",
]

SMOOTH = 1e-6
IGNORE_INDEX = 255  # a target pixel to leave out (the trimap border with border="ignore")


def foreground(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Where sigmoid(logits) > `threshold`, as a bool tensor: `logits` against the threshold's logit.

    Exact where the sigmoid is not: in float32 it rounds logits up to about 9e-8 to 0.5 (so they would
    not pass 0.5) and any threshold above 1 - 6e-8 to 1 (nothing would pass). At 0.5 this is
    `logits > 0`, as an exported model's users test it.
    """
    return logits.float() > threshold_logit(threshold)


def threshold_logit(threshold: float) -> float:
    """The logit of `threshold` (0 at 0.5), in float64: what `foreground` compares logits with."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold={threshold!r}; give a probability in (0, 1), e.g. 0.5")
    return torch.tensor(threshold, dtype=torch.float64).logit().item()


def confusion_counts(
    logits: torch.Tensor,
    target: torch.Tensor,
    threshold: float = 0.5,
    ignore_index: int | None = IGNORE_INDEX,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True positives, false positives, false negatives per image: three float tensors of shape (B,).

    `logits` and `target` are (B, 1, H, W) or (B, H, W); target holds 0/1 (and `ignore_index`).
    """
    if logits.shape != target.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape"
        )
    pred = foreground(logits, threshold)
    truth = target == 1
    if ignore_index is not None:
        valid = target != ignore_index
        pred, truth = pred & valid, truth & valid
    dims = tuple(range(1, logits.ndim))
    tp = (pred & truth).sum(dims).float()
    fp = (pred & ~truth).sum(dims).float()
    fn = (~pred & truth).sum(dims).float()
    return tp, fp, fn


def segment_counts(
    logits: torch.Tensor,
    target: torch.Tensor,
    lengths: list[int],
    threshold: float = 0.5,
    ignore_index: int | None = IGNORE_INDEX,
) -> torch.Tensor:
    """(S, 4) int64: true positives, false positives, false negatives and valid (not ignored) pixels of
    each of S images laid end to end, image s being the next `lengths[s]` values of the flat `logits`
    and `target`: the counts `confusion_counts` gives each image alone, in a fixed number of operations
    for any S (on a GPU each operation is a kernel launch; on a CPU a sum per image costs less)."""
    if logits.shape != target.shape or logits.ndim != 1 or sum(lengths) != logits.numel():
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must be flat, of the same "
            f"length, and that length the sum of lengths ({sum(lengths)})"
        )
    pred = foreground(logits, threshold)
    truth = target == 1
    valid = target != ignore_index if ignore_index is not None else torch.ones_like(truth)
    pred, truth = pred & valid, truth & valid
    indicators = (pred & truth, pred & ~truth, ~pred & truth, valid)
    # Running totals of each indicator, read at each image's end: a count is a difference of two. One
    # 1-D scan each (CUDA scans a 1-D tensor with CUB, the rows of a 2-D one a block each), in int32
    # where the total fits: half the bytes of int64.
    ends = torch.tensor(lengths, dtype=torch.long).cumsum(0).sub_(1).to(logits.device, non_blocking=True)
    dtype = torch.int32 if logits.numel() < 2**31 else torch.int64
    counts = []
    for x in indicators:
        at_ends = x.cumsum(0, dtype=dtype)[ends]
        counts.append(at_ends.diff(prepend=at_ends.new_zeros(1)))  # the first image's from 0
    return torch.stack(counts, 1).long()


def dice_from_counts(
    tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, smooth: float = SMOOTH
) -> torch.Tensor:
    """2TP / (2TP + FP + FN), smoothed."""
    return (2 * tp + smooth) / (2 * tp + fp + fn + smooth)


def iou_from_counts(
    tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, smooth: float = SMOOTH
) -> torch.Tensor:
    """TP / (TP + FP + FN), smoothed."""
    return (tp + smooth) / (tp + fp + fn + smooth)


def dice_per_image(
    logits: torch.Tensor,
    target: torch.Tensor,
    threshold: float = 0.5,
    smooth: float = SMOOTH,
    ignore_index: int | None = IGNORE_INDEX,
) -> torch.Tensor:
    """Dice of each image, shape (B,)."""
    return dice_from_counts(*confusion_counts(logits, target, threshold, ignore_index), smooth=smooth)


def iou_per_image(
    logits: torch.Tensor,
    target: torch.Tensor,
    threshold: float = 0.5,
    smooth: float = SMOOTH,
    ignore_index: int | None = IGNORE_INDEX,
) -> torch.Tensor:
    """IoU (Jaccard) of each image, shape (B,)."""
    return iou_from_counts(*confusion_counts(logits, target, threshold, ignore_index), smooth=smooth)


def dice_score(
    logits: torch.Tensor,
    target: torch.Tensor,
    threshold: float = 0.5,
    smooth: float = SMOOTH,
    ignore_index: int | None = IGNORE_INDEX,
) -> torch.Tensor:
    """Mean of the per-image Dice: the original's metric. A 0-d tensor."""
    return dice_per_image(logits, target, threshold, smooth, ignore_index).mean()


def iou_score(
    logits: torch.Tensor,
    target: torch.Tensor,
    threshold: float = 0.5,
    smooth: float = SMOOTH,
    ignore_index: int | None = IGNORE_INDEX,
) -> torch.Tensor:
    """Mean of the per-image IoU. A 0-d tensor."""
    return iou_per_image(logits, target, threshold, smooth, ignore_index).mean()


def dataset_dice(
    tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, smooth: float = SMOOTH
) -> torch.Tensor:
    """Dataset-level Dice: the counts of all images summed, then one Dice."""
    return dice_from_counts(tp.sum(), fp.sum(), fn.sum(), smooth)


def dataset_iou(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, smooth: float = SMOOTH) -> torch.Tensor:
    """Dataset-level IoU: the counts of all images summed, then one IoU."""
    return iou_from_counts(tp.sum(), fp.sum(), fn.sum(), smooth)

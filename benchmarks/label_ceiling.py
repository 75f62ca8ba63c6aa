"""The best test Dice a model could reach by learning its training labels perfectly: each test trimap
resized to the training size as the pipelines resize masks, up-sampled back bilinearly (as `evaluate`
up-samples logits), thresholded and scored against the trimap. Albumentations' default mask resize
(cv2 INTER_NEAREST, which seglib used before) against seglib's `transforms.resize` (pixel-centred).

    .venv/bin/python benchmarks/label_ceiling.py [DATA_ROOT]

Deterministic: the same on every machine. Prints one row per size.
"""

from __future__ import annotations

import sys

import albumentations as A
import numpy as np
import torch
import torch.nn.functional as F

from seglib.data import OxfordPetDataset
from seglib.data.transforms import resize
from seglib.metrics import dice_per_image

SAMPLE = "../shared/data/oxford-pet-sample/oxford-iiit-pet"


def ceiling(masks: list[np.ndarray], shrink: A.Resize) -> float:
    """Mean Dice of the masks after `shrink` and a bilinear up-sampling back to their size."""
    scores = []
    for m in masks:
        small = shrink(image=np.zeros((*m.shape, 3), np.uint8), mask=m)["mask"]
        up = F.interpolate(torch.from_numpy(small).float()[None, None], size=m.shape, mode="bilinear")
        logits = (up[0] - 0.5) * 20  # a label of 1 a confident pet, 0 background: threshold at 0.5
        scores.append(dice_per_image(logits, torch.from_numpy(m)[None].float()).item())
    return float(np.mean(scores))


def main() -> None:
    root = sys.argv[1] if len(sys.argv) > 1 else SAMPLE
    test = OxfordPetDataset(root, "test")
    masks = [test.load_mask(i) for i in range(len(test))]
    print(f"{len(masks)} test trimaps of {root}; label ceiling (mean Dice at original resolution)")
    print("| size | A.Resize default (cv2 nearest) | seglib resize (nearest-exact) |")
    print("|---|---|---|")
    for size in (96, 128, 160, 256):
        old, new = ceiling(masks, A.Resize(size, size)), ceiling(masks, resize(size))
        print(f"| {size} | {old:.4f} | {new:.4f} |")


if __name__ == "__main__":
    main()

"""The evaluation rows: scoring at original resolution, the original's per-image loop against `evaluate`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..data import OxfordPetDataset, SegmentationDataset, collate, eval_transform
from ..engine import evaluate
from ..metrics import confusion_counts, dice_from_counts
from ..models import build_model
from .timing import interleaved, row, row_text


def reference_eval(model: torch.nn.Module, test: OxfordPetDataset, dev: torch.device) -> Callable[[], float]:
    """The original's evaluation (DataLoader with 2 workers, a host sync per image) of `test` (returning
    full-size masks): a function giving its images/s."""

    @torch.no_grad()
    def run() -> float:
        t = time.perf_counter()
        for b in DataLoader(test, batch_size=8, num_workers=2, collate_fn=collate):
            logits = model(b["image"].to(dev))
            for j, full in enumerate(b["mask_full"]):
                up = torch.nn.functional.interpolate(logits[j : j + 1], size=full.shape, mode="bilinear")
                dice_from_counts(*confusion_counts(up[:, 0], full[None].to(dev))).item()
        return len(test) / (time.perf_counter() - t)

    return run


def eval_rows(
    root: Path, cache: Path, dev: torch.device, reps: int, log: Callable[[str], Any]
) -> list[dict[str, Any]]:
    """Evaluation at original resolution (256 px model input, scored against the full-size trimaps): the
    original's per-image loop against `evaluate`, reading JPEGs and then a cached test set."""
    test = OxfordPetDataset(root, "test", eval_transform(256), return_full_mask=True)
    model = build_model("resnet34_unet").to(dev).eval()
    model_cl = build_model("resnet34_unet").to(dev).to(memory_format=torch.channels_last).eval()

    ref_eval = reference_eval(model, test, dev)

    def timed_eval(ds: SegmentationDataset) -> Callable[[], float]:
        def run() -> float:
            t = time.perf_counter()
            evaluate(model_cl, ds, device=str(dev), batch_size=8, progress=False)
            return len(ds) / (time.perf_counter() - t)

        return run

    # The same with the test set decoded once (dataset.use_cache): pre-resized images, no JPEG decode.
    cached = OxfordPetDataset(root, "test", eval_transform(256)).use_cache(cache, 256)
    what = f"evaluation resnet34_unet 256px, original-resolution scoring, {len(test)} images"
    rows = []
    for label, ds in ((what, test), (f"{what}, test set cached", cached)):
        rows.append(row(label, "images/s", *interleaved(ref_eval, timed_eval(ds), reps)))
        log(row_text(rows[-1]))
    return rows

"""Evaluation with a free model, the GPU's situation on a CPU: what reading and scoring cost around it.

    .venv/bin/python benchmarks/eval_free_model.py LABEL

The model is one 1x1 convolution, so nearly all the time is reading the images and full-size trimaps and
scoring at original resolution. On the benchmark's Oxford-sized synthetic set (384 images, 96 in test,
150-1600 px; `seglib.bench.datapath.oxford_sized_set`), five rounds in turn of: the reference loop
(DataLoader with 2 workers, per-image scoring, as `seglib.bench.evaluation`), `evaluate` on the JPEGs,
and `evaluate` on the test set cached at 256 px. Prints LABEL and each one's median images/s with its
range. Run it from two checkouts in turn (PYTHONPATH=checkout) to compare commits; the figures go to
docs/performance.md with the machine and date.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from seglib.bench.datapath import oxford_sized_set
from seglib.bench.evaluation import reference_eval
from seglib.data import OxfordPetDataset, eval_transform
from seglib.engine import evaluate


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else ""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 1, 1).eval()
    tmp = Path(tempfile.mkdtemp())
    root = oxford_sized_set(384)
    test = OxfordPetDataset(root, "test", eval_transform(256), return_full_mask=True)
    cached = OxfordPetDataset(root, "test", eval_transform(256)).use_cache(tmp / "cache", 256)

    reference = reference_eval(model, test, torch.device("cpu"))

    def seglib(ds: OxfordPetDataset) -> float:
        t = time.perf_counter()
        evaluate(model, ds, device="cpu", batch_size=8, progress=False)
        return len(ds) / (time.perf_counter() - t)

    rates: dict[str, list[float]] = {"ref": [], "ours": [], "ours cached": []}
    seglib(test)  # warm-up
    for _ in range(5):
        rates["ref"].append(reference())
        rates["ours"].append(seglib(test))
        rates["ours cached"].append(seglib(cached))
    cells = (f"{k} {statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})" for k, v in rates.items())
    print(label, " ".join(cells), "images/s")


if __name__ == "__main__":
    main()

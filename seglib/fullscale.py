"""`python -m seglib.fullscale`: the workbook at the real data set's scale, without the real data.

- `cpu`: a synthetic set the size of the release (`make_fullsize_pets`: 3,680 trainval and 3,669 test
  images, its spread of sizes), the decode-once cache of the 3,680 trainval images (one process, then
  several), the evaluation of the 3,669 test images at original resolution with the process's peak
  memory after a quarter of them and after all of them (it must not grow with the number of images),
  and notebooks 02, 03 and 04 on the set under the tiny profile: 04's tables and mask viewer over
  3,669 rows per model. It prints the figures and the machine.
- `workbook`: the set, then notebooks 02, 03 and 04 under a profile (`benchmarks/gpu_workbook.sh` runs
  it under `gpu`): seconds per notebook, training images per second of each epoch, peak GPU memory,
  evaluation seconds, validation and test Dice. With `--sample DIR` (the real sample) it then trains
  both models at the original's size with the original and the recommended recipe (notebook 06, fixed
  epochs) and reports their test Dice at original resolution.

Small sizes (`--n_trainval 40 --n_test 12`) run the same code in a minute; the tests do that.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .bench.timing import PeakRSS
from .data import OxfordPetDataset, is_oxford_pet_root, make_fullsize_pets
from .data.cache import build_cache
from .data.synthetic import RELEASE_SIZES
from .engine import atomic_write_text, evaluate
from .engine.runs import latest_run, load_history
from .engine.runtime import cpu_name, native_bf16, resolve_device
from .models import build_model
from .provenance import stamp
from .workbook import run_workbook

__all__ = [
    "GpuMemory",
    "machine",
    "make_set",
    "cache_rows",
    "evaluation_rows",
    "workbook_rows",
    "sample_rows",
    "markdown",
    "main",
]

Row = dict[str, Any]
TRAINING = {"unet": "02_train_unet.ipynb", "resnet34_unet": "03_train_resnet34_unet.ipynb"}
EVALUATION = "04_evaluation.ipynb"
STUDY = "06_recipe_study.ipynb"
SAMPLE_RECIPES = "original,recommended+batch_size=8"  # both recipes exactly as RECIPES holds them


class GpuMemory:
    """Samples the GPU's used memory (nvidia-smi, every 0.5 s) while open: what the notebook kernels,
    which are other processes, hold. `peak` in MiB; None without CUDA or nvidia-smi."""

    def __init__(self, device: torch.device) -> None:
        self.device, self._stop = device, threading.Event()
        self.peak: float | None = None
        self._on = device.type == "cuda" and shutil.which("nvidia-smi") is not None

    def _read(self) -> float | None:
        index = str(self.device.index or 0)
        cmd = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", index]
        try:
            return float(subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.split()[0])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return None

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            used = self._read()
            if used is not None:
                self.peak = max(self.peak or 0.0, used)

    def __enter__(self) -> GpuMemory:
        if self._on:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._on:
            self._stop.set()
            self._thread.join()


def _gpu_name(device: torch.device) -> str | None:
    """The GPU's name from nvidia-smi: asking torch would create a CUDA context in this process, whose
    memory would then count in every notebook's peak."""
    if device.type != "cuda" or shutil.which("nvidia-smi") is None:
        return None
    cmd = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", str(device.index or 0)]
    return subprocess.run(cmd, capture_output=True, text=True).stdout.strip() or None


def machine(device: torch.device) -> Row:
    """Where the figures come from: CPU kind and cores, GPU, torch, Python, date, commit."""
    return {
        **stamp(),  # on a device run, give SEGLIB_COMMIT: its copy of .git may be older than the tree
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "native_bf16_cpu": native_bf16(torch.device("cpu")),
        "device": str(device),
        "gpu": _gpu_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def make_set(root: Path, n_trainval: int, n_test: int, workers: int | None = None) -> tuple[Path, list[Row]]:
    """The full-size synthetic set at `root` (made, timed; an existing one is reused)."""
    if is_oxford_pet_root(root):
        return root, [{"what": f"synthetic set at {root}", "value": None, "unit": "s", "note": "reused"}]
    t0 = time.perf_counter()
    make_fullsize_pets(root, n_trainval, n_test, workers=workers)
    secs = time.perf_counter() - t0
    note = f"{n_trainval} trainval + {n_test} test images, {workers or 'one per core'} processes"
    return root, [{"what": "synthetic set made", "value": secs, "unit": "s", "note": note}]


def cache_rows(root: Path, cache_dir: Path, image_size: int = 256, workers: int | None = None) -> list[Row]:
    """The decode-once cache of the trainval images at `image_size`: built in one process, then in
    `workers` (default: one per core, at most 8), each timed."""
    ds = OxfordPetDataset(root, "trainval")
    rows = []
    for name, procs in (("one process", 1), ("parallel", workers or min(8, os.cpu_count() or 1))):
        t0 = time.perf_counter()
        cache = build_cache(
            ds, image_size, cache_dir / name.replace(" ", "-"), log=lambda _: None, workers=procs
        )
        secs = time.perf_counter() - t0
        n = len(cache.names)
        what = f"cache of {n} trainval images at {image_size} px, {name}"
        note = f"{procs} process{'es' if procs > 1 else ''}; {n / secs:.0f} images/s"
        rows.append({"what": what, "value": secs, "unit": "s", "note": note})
        del cache
    gc.collect()
    return rows


def evaluation_rows(
    root: Path, device: str = "auto", image_size: int = 128, quarter: float = 0.25
) -> list[Row]:
    """Evaluation of the test split at original resolution by the quick profile's UNet (width 16, random
    weights: the Dice means nothing here), on its first quarter and on all of it, with the peak memory of
    each (this process's RSS on a CPU; max allocated on a GPU). Both hold the split's widest image."""
    dev = resolve_device(device)
    model = build_model("unet", base_channels=16).eval()
    n = len(OxfordPetDataset(root, "test"))
    # untimed first: the first call's one-off allocations would count against the smaller set
    evaluate(model, OxfordPetDataset(root, "test", image_size=image_size, limit=4), str(dev), progress=False)
    rows, peaks = [], []
    for limit in (max(1, round(n * quarter)), n):
        ds = OxfordPetDataset(root, "test", image_size=image_size, limit=limit)
        gc.collect()
        with PeakRSS(dev) as mem:
            t0 = time.perf_counter()
            df = evaluate(model, ds, device=str(dev), progress=True)
            secs = time.perf_counter() - t0
        peaks.append(mem.peak)
        what = f"evaluation of {len(df)} test images at original resolution ({image_size} px model input)"
        rows.append({"what": what, "value": secs, "unit": "s", "note": f"{len(df) / secs:.1f} images/s"})
        unit = "MB max allocated" if dev.type == "cuda" else "MB peak RSS"
        rows.append({"what": f"  peak memory, {len(df)} images", "value": mem.peak, "unit": unit, "note": ""})
    growth = peaks[1] - peaks[0]
    rows.append({"what": "  memory growth, all against a quarter", "value": growth, "unit": "MB", "note": ""})
    return rows


def _run(profile: str, data_root: Path, results: Path, notebook: str, params: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    run_workbook(profile, data_root, "oxford-pet", results, (notebook,), {notebook: params})
    return time.perf_counter() - t0


def workbook_rows(
    root: Path, results: Path, profile: str, device: str = "auto", models: Sequence[str] = tuple(TRAINING)
) -> tuple[list[Row], list[Row]]:
    """Notebooks 02, 03 (the `models`) and 04 on the data at `root` under `profile`: a row per notebook
    (seconds, peak GPU memory) and a row per model (epochs, images/s per epoch, Dice, evaluation)."""
    dev = resolve_device(device)
    notebooks: list[Row] = []
    for nb in [TRAINING[m] for m in models] + [EVALUATION]:
        with GpuMemory(dev) as gpu:
            secs = _run(profile, root, results, nb, {"device": device})
        notebooks.append({"notebook": nb, "seconds": secs, "peak GPU memory (MiB)": gpu.peak})
    summary = pd.read_csv(results / "evaluation" / "summary.csv", index_col=[0, 1])
    timing = pd.read_csv(results / "evaluation" / "timing.csv", index_col=0)
    rows = []
    for model in models:
        history, cfg = load_history(latest_run(results / "runs", f"{model}-{profile}"))
        n_train = len(OxfordPetDataset(root, "train", limit=cfg.train_limit))
        rate = n_train / history.seconds  # an epoch's training images per second, its validation included
        rows.append(
            {
                "model": model,
                "image size": cfg.image_size,
                "batch": cfg.batch_size,
                "epochs": len(history),
                "train images": n_train,
                "images/s, 1st epoch": rate.iloc[0],
                "images/s, later epochs (median)": rate.iloc[1:].median() if len(rate) > 1 else None,
                "best val Dice": history.val_dice.max(),
                "test Dice (original res.)": summary.loc[(model, "original"), "dice_mean"],
                "test Dice (model res.)": summary.loc[(model, "model"), "dice_mean"],
                "test images": int(timing.loc[model, "images"]),
                "evaluation s": timing.loc[model, "seconds"],
                "scored on": timing.loc[model, "device"],
            }
        )
    return notebooks, rows


def sample_rows(
    sample: Path, results: Path, profile: str, device: str, epochs: int, models: Sequence[str]
) -> list[Row]:
    """Each model trained on the real sample under `profile` with both recipes for `epochs` epochs
    (notebook 06, one run per recipe), and its test Dice at original resolution."""
    rows = []
    for model in models:
        out = results / f"sample-{model}"
        params = {"device": device, "model_name": model, "recipes": SAMPLE_RECIPES, "epochs": epochs}
        secs = _run(profile, sample, out, STUDY, params)
        final = pd.read_csv(out / "recipes" / "final.csv", index_col=0)
        for recipe, r in final.iterrows():
            rows.append(
                {
                    "model": model,
                    "recipe": recipe,
                    "epochs": int(r["epochs"]),
                    "train minutes": r["train minutes"],
                    "val Dice": r["val Dice"],
                    "test Dice (original res.)": r["test Dice"],
                    "test Dice median": r["test Dice median"],
                    "notebook s (both recipes)": secs,
                }
            )
    return rows


def markdown(rows: list[Row]) -> str:
    """Rows of one kind as a Markdown table (numbers to 4 significant digits)."""
    if not rows:
        return "(none)"
    cols = list(rows[0])

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return "-"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _report(result: dict[str, Any], out: Path | None) -> None:
    """Print every table and the machine; write fullscale.json and fullscale.md under `out`."""
    parts = [f"## {key}\n\n{markdown(rows)}" for key, rows in result.items() if key != "machine"]
    m = result["machine"]
    bf16 = "with" if m["native_bf16_cpu"] else "without"
    text = "\n\n".join(parts) + (
        f"\n\nmachine: {m['gpu'] or 'no GPU'}; CPU {m['cpu']} ({bf16} native bf16), {m['cpu_count']} cores, "
        f"{m['threads']} torch threads; torch {m['torch']}, Python {m['python']}; {m['date']}, "
        f"commit {m['commit']}\n"
    )
    print("\n" + text, flush=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "fullscale.json", json.dumps(result, indent=2, default=str) + "\n")
        atomic_write_text(out / "fullscale.md", text)


def _sample_part(a: argparse.Namespace, work: Path, profile: str, left: float) -> list[Row] | None:
    """The sample part, if the sample is there and `left` seconds leave it its time."""
    sample = Path(a.sample) if a.sample else None
    if sample is None or not sample.exists():
        print(f"fullscale: no sample at {a.sample!r}: the sample part skipped")
        return None
    if left < a.sample_min_s:
        print(f"fullscale: the sample part skipped ({left:.0f} s left); run it alone: PARTS=sample")
        return None
    models = [m for m in a.sample_models.split(",") if m]
    return sample_rows(sample, work / "results", profile, a.device, a.sample_epochs, models)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m seglib.fullscale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("mode", choices=("cpu", "workbook", "sample"), help="sample: the sample part alone")
    p.add_argument("--n_trainval", type=int, default=RELEASE_SIZES["n_trainval"])
    p.add_argument("--n_test", type=int, default=RELEASE_SIZES["n_test"])
    p.add_argument(
        "--workers", type=int, help="processes that make the set and the cache (default: the cores)"
    )
    p.add_argument(
        "--workdir", help="where the set, caches and runs go (default: a temporary folder, removed)"
    )
    p.add_argument("--out", help="write fullscale.json and fullscale.md here")
    p.add_argument("--profile", help="the notebooks' profile (default: tiny for cpu, else gpu)")
    p.add_argument("--device", default="auto")
    p.add_argument("--sample", default="", help="workbook, sample: the real sample's folder ('': none)")
    p.add_argument("--sample_epochs", type=int, default=30)
    p.add_argument("--sample_models", default="unet,resnet34_unet")
    p.add_argument(
        "--deadline_s",
        type=float,
        default=0,
        help="skip the sample part unless --sample_min_s of these "
        "seconds (counted from the start) are left for it (0: no deadline)",
    )
    p.add_argument("--sample_min_s", type=float, default=240)
    return p


def main(argv: list[str] | None = None) -> None:
    """`python -m seglib.fullscale`: the workbook at the release's scale (see the module's docstring)."""
    a = _parser().parse_args(argv)
    t0 = time.perf_counter()
    profile = a.profile or ("tiny" if a.mode == "cpu" else "gpu")
    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="seglib-fullscale-"))
    out = Path(a.out) if a.out else None
    result: dict[str, Any] = {"machine": machine(resolve_device(a.device))}
    try:
        if a.mode != "sample":
            root, result["set"] = make_set(work / "pets", a.n_trainval, a.n_test, a.workers)
        if a.mode == "cpu":
            result["cache"] = cache_rows(root, work / "cache", workers=a.workers)
            result["evaluation"] = evaluation_rows(root, a.device)
        if a.mode != "sample":
            result["notebooks"], result["models"] = workbook_rows(root, work / "results", profile, a.device)
            _report(result, out)
        if a.mode != "cpu":
            left = a.deadline_s - (time.perf_counter() - t0) if a.deadline_s else float("inf")
            rows = _sample_part(a, work, profile, left)
            if rows is not None:
                result["sample"] = rows
                _report(result, out)
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""`python -m seglib.bench`: the original's way of training (reference) against seglib's fast path.

Each figure is the median of the timed repetitions after a warm-up, with min and max; the two sides use
the same model, images and batch size, and take turns (A B A B ...), so a drift of clock or temperature
falls on both alike.

- reference: fp32, NCHW, PIL decode + Albumentations of the full-size JPEG for every sample of every
  epoch, DataLoader with 2 workers (re-created each epoch), `.item()` on loss and Dice every batch, in
  a plain glibc process.
- seglib: the memory format `choose_memory_format` picks for the machine (channels_last on CUDA; on a
  CPU the faster of channels_last and NCHW, probed once and cached), jemalloc where it is installed,
  decode-once cache (pre-resized uint8 memmaps), fit's DataLoader recipe (`seglib.engine.loaders`: no
  workers on a CPU), loss and Dice summed on the device and read once; bf16 autocast on CUDA and on a
  CPU with native bf16 (AVX512-BF16 or AMX), fp32 elsewhere.

The training-step rows on a CPU run each side in a worker process of its own (`stepworker`): an
allocator can only be chosen when a process starts, so one process cannot hold both sides honestly.
The workers import together, then build, probe and warm up one at a time, then take turns, one round
each (reference, seglib, seglib under glibc, reference, ...), each with the machine to itself. seglib's
worker times both memory formats and reports the one it picked, as fit() would, under its own
allocator; every (format, allocator) gets a "candidate" row against the reference, so the table
separates the allocator's share from the memory format's. On CUDA the step rows, and everywhere the
data, epoch and evaluation rows, run in this one process, under its allocator (glibc unless it was
started with jemalloc preloaded).

This module runs every row in turn and prints the Markdown table; its figures for the machines tried
are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..engine.runtime import resolve_device
from .cpu_steps import cpu_train_step
from .datapath import data_path_rows, oxford_sized_set
from .device_steps import bench_train_step
from .epochs import epoch_rows
from .evaluation import eval_rows
from .machine import bandwidth_rows, ceiling_rows, machine_facts
from .timing import row_text

# The groups of rows, in the order they run: training steps, data path, whole epochs, evaluation.
PARTS = ("steps", "data", "epochs", "eval")


def run_benchmark(
    quick: bool = False,
    device: str = "auto",
    reps: int | None = None,
    log: Callable[[str], Any] = print,
    compile_models: bool = False,
    only: tuple[str, ...] = PARTS,
) -> dict[str, Any]:
    """Run the measurements of `only` (of `PARTS`; the ceilings always); returns {"rows": [...], machine
    facts}."""
    dev = resolve_device(device)
    reps = reps or (3 if quick else 5)
    out = machine_facts(dev, quick)
    rows, choices = out["rows"], out["choices"]
    fast_ceiling = ceiling_rows(rows, dev, 2048 if quick else 4096, reps, log)
    bandwidth = bandwidth_rows(rows, dev, reps, log) if dev.type == "cuda" else 0.0
    if "steps" in only:
        rows += train_step_rows(
            _step_specs(dev, quick), reps, dev, compile_models, fast_ceiling, choices, log, bandwidth
        )
    if not {"data", "epochs", "eval"} & set(only):
        return out
    with tempfile.TemporaryDirectory(prefix="seglib-bench-") as tmp:
        # The test split is a quarter of the set; a GPU gets more images, so worker start-up does not dominate.
        root = oxford_sized_set(24 if quick else 384 if dev.type == "cuda" else 96)  # made once, then reused
        cache = Path(tmp) / "cache"
        rows += data_path_rows(root, cache, dev, reps, log) if "data" in only else []
        rows += epoch_rows(root, cache, dev, reps, choices, log) if "epochs" in only else []
        rows += eval_rows(root, cache, dev, reps, log) if "eval" in only else []
    return out


def _step_specs(dev: torch.device, quick: bool) -> list[tuple[str, dict[str, Any], int, int]]:
    """The training steps timed: (model, kwargs, image size, batch)."""
    if dev.type == "cuda":
        return [("unet", {}, 256, 32), ("resnet34_unet", {}, 256, 64)]
    if quick:
        return [("unet", {"base_channels": 16}, 128, 4), ("resnet34_unet", {}, 64, 4)]
    return [
        ("unet", {}, 256, 8),
        ("resnet34_unet", {}, 256, 8),
        ("unet", {"base_channels": 16}, 128, 8),
        ("resnet34_unet", {}, 96, 8),
    ]


def train_step_rows(
    steps: list[tuple[str, dict[str, Any], int, int]],
    reps: int,
    dev: torch.device,
    compile_models: bool,
    fast_ceiling: float,
    choices: dict[str, Any],
    log: Callable[[str], Any],
    bandwidth: float = 0.0,
) -> list[dict[str, Any]]:
    """The training-step rows of every (model, kwargs, size, batch): on a CPU in worker processes
    (`cpu_train_step`; seglib's choice of format goes into `choices`), elsewhere in this one, with the
    roofline bound of `fast_ceiling` GFLOP/s and `bandwidth` GB/s."""
    rows: list[dict[str, Any]] = []
    for name, kw, size, batch in steps:
        if dev.type == "cpu":
            new, choice = cpu_train_step(name, kw, size, batch, steps=1, reps=reps)
            choices[new[0]["what"]] = choice
        else:
            new = bench_train_step(
                name, kw, size, batch, 10, reps, dev, compile_models, (fast_ceiling, bandwidth)
            )
            choice = None
        rows += new
        log(
            row_text(new[0])
            + f" | achieved {new[1]['seglib']:.0f} GFLOP/s = {new[1]['seglib'] / fast_ceiling:.0%} of its ceiling"
        )
        if choice:
            log(f"  seglib's {choice['describe']}, chosen under {choice['allocator']} malloc")
    return rows


def markdown_table(result: dict[str, Any]) -> str:
    """The rows as a Markdown table (medians; min-max in brackets)."""
    lines = ["| what | unit | reference | seglib | seglib / reference |", "|---|---|---|---|---|"]
    for r in result["rows"]:

        def cell(key: str, r: dict[str, Any] = r) -> str:
            v = r.get(key)
            if v is None:
                return "-"
            lo, hi = r.get(f"{key}_min"), r.get(f"{key}_max")
            return f"{v:.3g}" + (f" ({lo:.3g}-{hi:.3g})" if lo is not None else "")

        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") else "-"
        lines.append(f"| {r['what']} | {r['unit']} | {cell('reference')} | {cell('seglib')} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m seglib.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick", action="store_true", help="small sizes, 3 repetitions: a smoke run (docs/performance.md)"
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--reps", type=int, help="timed repetitions (default 5, quick 3)")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--compile", action="store_true", help="on CUDA, also time the step under torch.compile")
    p.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated groups of rows to run, of {','.join(PARTS)} (default all; the ceilings always)",
    )
    a = p.parse_args(argv)
    only = tuple(a.only.split(","))
    if unknown := set(only) - set(PARTS):
        p.error(f"--only {a.only}: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    result = run_benchmark(a.quick, a.device, a.reps, compile_models=a.compile, only=only)
    print("\n" + markdown_table(result))
    print(
        f"\n{result['device_name']}, {result['cpu_count']} cores, torch {result['torch']}, {result['threads']} threads, "
        f"images decoded by {result['decoder']}, loader workers started by {result['start_method']}"
    )
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")

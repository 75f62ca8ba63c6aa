"""What `fit` says: the run's first line, each epoch's line, and how to go on when a run stops before its
end (Ctrl-C in its set-up, a loader worker killed, another rank lost). Rank 0 speaks for the run (`say`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..allocator import allocator_advice, allocator_name
from ..data import SegmentationDataset
from ..models import count_parameters
from .config import TrainConfig
from .distributed import DistInfo
from .extend import own_names
from .loop import Env
from .progress import shell_of_kernel
from .runtime import precision_name
from .workers import how_it_ended, worker_lost

__all__ = [
    "UNSAVED",
    "describe_run",
    "epochs_said",
    "lost_process_advice",
    "report_epoch",
    "resume_command",
    "say",
]

# a Ctrl-C (or SIGTERM) in fit's set-up (reading the data, the probe, the cache), or a second one while it saved
UNSAVED = (
    "training stopped before it saved where it stood (in its set-up, or at a second Ctrl-C or SIGTERM during a save): "
    "where its run folder has a last.pt, that holds its last saved epoch: resume from it (fit(cfg, "
    "resume=RUN_FOLDER), or `python -m seglib train --resume RUN_FOLDER`); else nothing was trained: start it again"
)


# gloo's words when another process of the run is gone: "Connection reset by peer", "... closed by peer"
PEER_LOST = "by peer"


def lost_process_advice(
    e: Exception, loaders: Iterable[object], run_dir: Path, info: DistInfo, worker_exit: int | None = None
) -> str | None:
    """What to do when `e` says a process the run needs is gone; None when it says something else.
    `worker_exit`: the exit code of the worker that ended, where known (minus the signal's number)."""
    if worker_lost(e, loaders):
        return lost_worker_advice(run_dir, info, worker_exit)
    # Another rank killed or its node lost: this rank learns it in its next collective, from gloo.
    if info.distributed and isinstance(e, RuntimeError) and PEER_LOST in str(e):
        return (
            "Another process of this run has ended (killed, out of memory, or its node "
            f"lost: its own log says which); {saved_or_not(run_dir, info)}, on every node"
        )
    return None


def resume_command(run_dir: Path, info: DistInfo) -> str:
    """How to resume `run_dir`, in Python and on the command line (under torchrun where it ran so); a run
    of a registered model, loss, scheduler or augmentation in Python only, which registers them first."""
    python = f"fit(cfg, resume={str(run_dir)!r})"
    try:
        own = own_names(json.loads((run_dir / "config.json").read_text()))
    except (OSError, ValueError):
        own = []
    if own:
        return f"{python}, in a process that has registered {', '.join(own)} (the command line cannot)"
    launcher = "torchrun ... -m seglib" if info.distributed else "python -m seglib"
    return f"{python} or `{launcher} train --resume {run_dir}`"


def lost_worker_advice(run_dir: Path, info: DistInfo, worker_exit: int | None = None) -> str:
    """What to do after a loader worker ended mid-run (`workers.how_it_ended`): the run's last save stands,
    as after Ctrl-C, and a resumed run may take other num_workers."""
    return f"{how_it_ended(worker_exit)}; a resumed run may take other num_workers; {saved_or_not(run_dir, info)}"


def saved_or_not(run_dir: Path, info: DistInfo) -> str:
    """Where the run's last save is and how to resume it, or that there is none."""
    if (run_dir / "last.pt").is_file():
        return f"{run_dir / 'last.pt'} holds the run up to its last save: resume with {resume_command(run_dir, info)}"
    return "nothing was saved yet: start the run anew"


def describe_run(
    cfg: TrainConfig,
    info: DistInfo,
    env: Env,
    model: nn.Module,
    kind: str,
    train_ds: SegmentationDataset,
    val_ds: SegmentationDataset,
    run_dir: Path,
) -> str:
    """The run's first line: model, data, sizes, batch, schedule, device, precision, and every folder it
    writes (run folder, cache folder)."""
    batch = f"batch {cfg.batch_size}"
    if info.distributed:
        effective = cfg.batch_size * info.world_size
        sync = ", sync_bn" if cfg.sync_bn else ""
        batch += f" per process x {info.world_size} processes = {effective} effective ({info.backend}{sync})"
    precision = precision_name(env.device, env.use_amp)
    # A folder's split: its split files or the seeded split.
    split = f" ({train_ds.split_source}; written to {run_dir / 'splits'})" if kind == "folder" else ""
    n = count_parameters(model)
    size = f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"  # a narrow test model: not "0.0M"
    own = cfg.augment and cfg.augmentation != "default"
    scheduler = f"scheduler {cfg.scheduler}" + (f", augmentation {cfg.augmentation}" if own else "")
    return (
        f"seglib: {cfg.model} ({size} parameters) on {kind} data "
        f"({train_ds.root}): train {len(train_ds)} / val {len(val_ds)} images{split} at {cfg.image_size} px, "
        f"{batch}, {epochs_said(cfg.epochs)}, {scheduler}, device {env.device}{_malloc(env.device)}"
        f", {precision}; run folder {run_dir}{_cache_folder(train_ds)}"
    )


def _malloc(device: torch.device) -> str:
    """On a CPU, the allocator (seglib/allocator.py): it counts in a step's time there; without jemalloc
    where it is installed, how to start with it (the command line and the workbook's kernels do)."""
    if device.type != "cpu":
        return ""
    advice = allocator_advice(in_kernel=shell_of_kernel() is not None)
    return f" ({allocator_name()} malloc{'; ' + advice if advice else ''})"


def _cache_folder(ds: SegmentationDataset) -> str:
    """The decode-once cache's folder, when the samples come from one: the run writes there too."""
    return f"; cache folder {ds.cache.folder.parent}" if ds.cache is not None else ""


def report_epoch(info: DistInfo, cfg: TrainConfig, row: dict[str, Any], skipped: list[str]) -> None:
    if skipped:
        say(
            info,
            f"epoch {row['epoch']}: skipped {len(skipped)} unreadable sample(s): {'; '.join(skipped[:5])}",
        )
    if cfg.progress:
        say(
            info,
            f"epoch {row['epoch']:3d}/{cfg.epochs}: train loss {row['train_loss']:.4f} dice "
            f"{row['train_dice']:.4f} | val loss {row['val_loss']:.4f} dice {row['val_dice']:.4f} | "
            f"lr {row['lr']:.2e} | {row['seconds']:.1f} s",
        )


def epochs_said(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def say(info: DistInfo, message: str) -> None:
    """`print` on rank 0: one process speaks for the run. Flushed: a log file (no terminal) shows each
    line when it is said, not when a buffer fills."""
    if info.is_main:
        print(message, flush=True)

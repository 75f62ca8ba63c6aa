"""What a run ran on: the code, the libraries and the machine, kept in its folder as environment.json.

A run's figures compare only with those of the same code and the same kind of machine (a budget in minutes
buys several times the epochs on a CPU with native bf16 than on one without). The run's first line says
so on screen; environment.json keeps it with the run, one entry per start, since a resumed run may go on
with other code or on another machine.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ..allocator import allocator_name
from ..data.revisions import SAMPLES_REVISION, changes_since, revision_at
from ..provenance import git_changes, git_commit
from .io import atomic_write_text
from .runtime import cpu_kind, precision_name

__all__ = [
    "ENVIRONMENT_FILE",
    "run_environment",
    "record_start",
    "read_environment",
    "samples_changed",
    "first_epoch_on_todays_samples",
]

ENVIRONMENT_FILE = "environment.json"
PACKAGES = ("seglib", "torchvision", "albumentations", "numpy", "opencv-python-headless", "onnxruntime")


def run_environment(device: torch.device, use_amp: bool, world_size: int = 1) -> dict[str, Any]:
    """The code, libraries and machine of a run starting now on `device` (one of `world_size` processes)."""
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "seglib_commit": git_commit(),
        "seglib_changes": git_changes(),
        "python": platform.python_version(),
        # torch's own version string names its build (+cpu, +cu130): the installed metadata does not
        "packages": {"torch": torch.__version__} | {name: _version(name) for name in PACKAGES},
        "device": str(device),
        "machine": _machine(device),
        "precision": precision_name(device, use_amp),
        "threads": torch.get_num_threads(),
        "allocator": allocator_name() if device.type == "cpu" else None,
        "world_size": world_size,
        "samples_revision": SAMPLES_REVISION,  # how seglib read and resized the samples (data.revisions)
    }


def record_start(run_dir: str | Path, entry: dict[str, Any]) -> None:
    """Append `entry` (with where the run starts: epochs done, step of the next) to the run's file."""
    path = Path(run_dir) / ENVIRONMENT_FILE
    starts = read_environment(run_dir) if path.exists() else []
    atomic_write_text(path, json.dumps(starts + [entry], indent=2) + "\n")


def read_environment(run_dir: str | Path) -> list[dict[str, Any]]:
    """The starts of the run in `run_dir`, first to last ([] for a run from before the file existed)."""
    path = Path(run_dir) / ENVIRONMENT_FILE
    if not path.exists():
        return []
    try:
        starts = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{path} is unreadable ({e}); delete it: only the record of the run's starts is lost"
        ) from e
    if not isinstance(starts, list):
        raise ValueError(
            f"{path} holds no list of starts; delete it: only the record of the run's starts is lost"
        )
    return starts


def samples_changed(run_dir: str | Path, kind: str | None = None, assumed: str | None = None) -> list[str]:
    """What changed in seglib's samples since the run in `run_dir` began, for data sets of `kind` (None:
    the one kind its starts recorded; where they recorded none, `assumed`; else any): empty where it trains
    on today's samples. A start from before the starts recorded a revision reads as the revision of its
    date; a run without environment.json as the first."""
    starts = [s for s in read_environment(run_dir) if isinstance(s, dict)]
    kinds = {s["data"] for s in starts if isinstance(s.get("data"), str)}
    kind = kind or (kinds.pop() if len(kinds) == 1 else None if kinds else assumed)
    return changes_since(min(map(_start_revision, starts), default=1), kind)


def first_epoch_on_todays_samples(run_dir: str | Path) -> int | None:
    """The first epoch the run in `run_dir` trained on the samples today's seglib gives (None: none yet)."""
    for start in read_environment(run_dir):
        if isinstance(start, dict) and _start_revision(start) == SAMPLES_REVISION:
            done = start.get("epoch")
            return done + 1 if isinstance(done, int) else None
    return None


def _start_revision(start: dict[str, Any]) -> int:
    """The samples' revision a start trained on: as it recorded, else that of its date."""
    revision = start.get("samples_revision")
    if isinstance(revision, int) and not isinstance(revision, bool):
        return revision
    return revision_at(start.get("started"))


def _machine(device: torch.device) -> str:
    """The GPU's name (with CUDA's version), or the CPU's kind."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return cpu_kind()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None

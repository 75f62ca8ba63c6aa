"""`TrainConfig`: every setting of a training run, validated before any work starts, and the profiles."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data import BORDER_MODES, DATASETS
from ..models import MODELS

__all__ = ["TrainConfig", "PROFILES", "SCHEDULERS", "config_from_profile"]

SCHEDULERS = ("none", "cosine", "onecycle", "step", "multistep")


@dataclass
class TrainConfig:
    """A training run. The defaults are the original's settings (the "full" profile)."""

    # model
    model: str = "unet"  # "unet" | "resnet34_unet"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"base_channels": 16}
    # data
    data_root: str = "data/oxford-iiit-pet"
    dataset: str = "auto"  # "auto" (real data if present, else synthetic) | "oxford-pet" | "synthetic"
    synthetic_root: str = "data/synthetic-pets"
    image_size: int = 256
    border: str = "pet"  # trimap border: "pet" (the original) | "ignore"
    augment: bool = True
    on_corrupt: str = (
        "raise"  # an unreadable image or trimap: "raise" (naming it) | "skip" (counted, reported)
    )
    train_limit: int | None = None  # use only the first N training images (None: all)
    val_limit: int | None = None
    # optimisation
    epochs: int = 50
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 1e-4
    scheduler: str = "none"  # "none" | "cosine" | "onecycle" | "step" | "multistep"
    min_lr: float = 0.0  # cosine's floor
    pct_start: float = 0.3  # onecycle's warm-up fraction
    step_size: int = 10  # step: epochs between decays
    milestones: list[int] | None = None  # multistep: epochs of decay (None: 50% and 75% of the epochs)
    gamma: float = 0.1  # step / multistep decay factor
    threshold: float = 0.5
    seed: int = 42
    # machine
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    num_workers: int | None = None  # None: 0 on CPU (the model is the bottleneck), up to 8 on CUDA
    amp: bool | None = None  # mixed precision; None: on for CUDA, off for CPU (no native bf16 there)
    channels_last: bool = True
    deterministic: bool = True  # same seed, same data, same device -> same result (cuDNN autotuning off)
    # output
    output_dir: str = "results/runs"
    run_name: str | None = None  # None: "<model>-<scheduler>-<time>"
    overwrite: bool = False
    progress: bool = True
    log_every: int = 10  # steps between progress-bar updates (each costs a device sync)
    use_wandb: bool = False
    wandb_project: str = "seglib"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the parameter and the valid choices."""
        _choice("model", self.model, sorted(MODELS))
        _choice("dataset", self.dataset, DATASETS)
        _choice("border", self.border, BORDER_MODES)
        _choice("scheduler", self.scheduler, SCHEDULERS)
        _choice("on_corrupt", self.on_corrupt, ("raise", "skip"))
        for name in ("epochs", "batch_size", "image_size", "step_size", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("train_limit", "val_limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or a positive integer, got {value!r}")
        if self.image_size < 32:
            raise ValueError(
                f"image_size must be at least 32 px (the encoders downsample 32x), got {self.image_size}"
            )
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"num_workers must be None or >= 0, got {self.num_workers!r}")
        if self.milestones is not None and sorted(self.milestones) != list(self.milestones):
            raise ValueError(f"milestones must be increasing epochs, got {self.milestones!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        from .io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys raise, listing the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _choice(name: str, value: Any, choices: Any) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {list(choices)}")


# "full" is the original's settings. "quick" shrinks what costs FLOPs on a CPU: UNet width 16 instead
# of 64 (16x fewer FLOPs), 128 px instead of 256 (4x), 240 training images and 8 epochs.
PROFILES: dict[str, dict[str, Any]] = {
    "full": {},
    "quick": {
        "image_size": 128,
        "epochs": 8,
        "train_limit": 240,
        "val_limit": 60,
        "model_kwargs": {"base_channels": 16},
        "lr": 1e-3,
        "scheduler": "onecycle",
    },
}


def config_from_profile(profile: str = "full", **overrides: Any) -> TrainConfig:
    """A TrainConfig from a profile ("full" | "quick") with `overrides` on top."""
    _choice("profile", profile, PROFILES)
    base = dict(PROFILES[profile])
    if overrides.get("model", "unet") != "unet":
        base.pop("model_kwargs", None)  # base_channels is UNet's knob
    base.update(overrides)
    return TrainConfig.from_dict(base)

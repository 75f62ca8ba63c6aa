"""`TrainConfig`: every setting of a training run, validated before any work starts, and the profiles."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data import BORDER_MODES, DATASETS
from ..models import MODELS
from .losses import LOSSES

__all__ = [
    "TrainConfig",
    "PROFILES",
    "RECIPES",
    "PROFILE_RECIPES",
    "MODEL_PROFILES",
    "MODEL_RECIPES",
    "SCHEDULERS",
    "config_from_profile",
]

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
    shuffle: bool = True  # a new training order every epoch (from seed and epoch); False: dataset order
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
    loss: str = "bce"  # "bce": BCEWithLogits (the original) | "bce_dice": BCE + soft Dice
    ema_decay: float = 0.0  # weight EMA (seglib.engine.ema): validate and keep the averaged weights; 0: off
    scale_jitter: float = 0.0  # augmentation: random zoom in [1 - j, 1 + j] and shift up to j / 2 (0: off)
    copy_paste: float = 0.0  # augmentation: paste another image's pet with this probability (0: off)
    tta: bool = False  # validate with horizontal-flip test-time augmentation (the recipe's evaluation)
    threshold: float = 0.5
    seed: int = 42
    # machine
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    num_workers: int | None = None  # None: 0 on CPU (the model is the bottleneck), up to 8 on CUDA
    amp: bool | None = None  # mixed precision; None: on for CUDA and for a CPU with native bf16
    channels_last: bool = True
    cache: bool = True  # decode each image once into a memory-mapped cache at image_size (seglib.data.cache)
    cache_dir: str | None = None  # None: <output_dir>/../cache, e.g. results/cache
    deterministic: bool = True  # same seed, same data, same device -> same result (cuDNN autotuning off)
    sync_bn: bool = False  # under torchrun: BatchNorm statistics of the global batch (all processes)
    # output
    output_dir: str = "results/runs"
    run_name: str | None = None  # None: "<model>-<scheduler>-<time>"
    overwrite: bool = False
    progress: bool = True
    log_every: int = 10  # steps between progress-bar updates (each costs a device sync)
    checkpoint_every: int = 0  # also keep every N-th epoch's model in <run>/epochs/ (0: best, last only)
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
        _choice("loss", self.loss, LOSSES)
        for name in ("epochs", "batch_size", "image_size", "step_size", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("shuffle", "sync_bn", "cache", "tta", "augment"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        for name in ("train_limit", "val_limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or a positive integer, got {value!r}")
        every = self.checkpoint_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(f"checkpoint_every must be an integer >= 0 (0: off), got {every!r}")
        if not (self.ema_decay == 0 or 0 < self.ema_decay < 1):
            raise ValueError(f"ema_decay must be 0 (off) or in (0, 1), e.g. 0.99; got {self.ema_decay!r}")
        if not 0 <= self.scale_jitter < 1:
            raise ValueError(f"scale_jitter must be in [0, 1), e.g. 0.25; got {self.scale_jitter!r}")
        if not 0 <= self.copy_paste <= 1:
            raise ValueError(f"copy_paste must be a probability in [0, 1], e.g. 0.5; got {self.copy_paste!r}")
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


# A recipe is how a model is trained (optimiser, schedule, loss, augmentation, EMA, evaluation), apart
# from how much (image size, epochs, images), which the profiles set. "original" is the original's recipe;
# "recommended" is what the recipe study (notebooks/06_recipe_study.ipynb, README "Recipe study") chose
# on the validation images of the real sample: per minute of CPU it beats the original at every budget.
RECIPES: dict[str, dict[str, Any]] = {
    "original": {
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "scheduler": "none",
        "loss": "bce",
        "batch_size": 8,
        "border": "pet",
        "ema_decay": 0.0,
        "scale_jitter": 0.0,
        "tta": False,
    },
    "recommended": {
        "lr": 2e-3,
        "weight_decay": 1e-4,
        "scheduler": "onecycle",
        "pct_start": 0.3,
        "loss": "bce_dice",
        "batch_size": 8,
        "border": "pet",
        "ema_decay": 0.99,
        "scale_jitter": 0.0,
        "tta": False,
    },
}
# "full" is the original's settings. "recommended" is the recommended recipe at the budget the study
# measured: about 12 minutes of ResNet34-UNet training on the sample's 270 images on a 2-core CPU with
# native bf16 (11-12 s per epoch on this workplace's AMD EPYC; about 1.4x longer in fp32).
# "quick" is for a 2-core CPU: it shrinks what costs FLOPs (UNet width 16 instead of 64: 16x fewer;
# 128 px instead of 256: 4x fewer; at most 240 training images, 8 epochs) and trains with the
# recommended recipe, which learns in so few steps. "tiny" only checks that everything runs (tests, CI).
PROFILES: dict[str, dict[str, Any]] = {
    "full": {},
    "recommended": {"image_size": 96, "epochs": 60},
    "quick": {
        "image_size": 128,
        "epochs": 8,
        "train_limit": 240,
        "val_limit": 60,
        "model_kwargs": {"base_channels": 16},
    },
    "tiny": {
        "image_size": 32,
        "epochs": 2,
        "batch_size": 4,
        "train_limit": 16,
        "val_limit": 8,
        "lr": 1e-3,
        "scheduler": "onecycle",
        "model_kwargs": {"base_channels": 4},
    },
}
PROFILE_RECIPES = {"full": "original", "recommended": "recommended", "quick": "recommended"}
# ResNet34-UNet has no width knob: its quick profile shrinks images and epochs instead (5x UNet-16's cost).
# UNet's recommended profile is the 12-minute budget the study chose on the validation images: width 16 at
# 160 px (val Dice +0.0075 over 128 px, mean of three seeds; 192 px no better), 70 epochs (about 10 minutes here).
MODEL_PROFILES: dict[tuple[str, str], dict[str, Any]] = {
    ("recommended", "unet"): {"model_kwargs": {"base_channels": 16}, "image_size": 160, "epochs": 70},
    ("quick", "resnet34_unet"): {"image_size": 96, "train_limit": 160, "epochs": 6},
    ("tiny", "resnet34_unet"): {"image_size": 32, "train_limit": 8, "epochs": 1},
}
# What the study added to its profile's own recipe for one model (not to another recipe in the same
# profile, such as the original's it is compared with). The UNet at width 16 fits its 270 training images
# (training Dice 0.94, val 0.86): a random zoom of 0.75-1.25 and the paper's dropout at the end of the
# contracting path regularise it (README, "Recipe study": val Dice over three seeds).
MODEL_RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    ("recommended", "unet"): {"scale_jitter": 0.25, "model_kwargs": {"dropout": 0.2}},
}


def config_from_profile(profile: str = "full", recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """A TrainConfig: the profile's sizes, `recipe` (default: the profile's), the profile's sizes for
    `overrides["model"]` (with the profile's own recipe also its `MODEL_RECIPES` additions), then
    `overrides`. Profiles: "full" | "recommended" | "quick" | "tiny"; recipes: "original" | "recommended".
    """
    _choice("profile", profile, PROFILES)
    recipe = recipe or PROFILE_RECIPES.get(profile)
    if recipe is not None:
        _choice("recipe", recipe, RECIPES)
    model = overrides.get("model", "unet")
    base = dict(PROFILES[profile])
    base.update(RECIPES[recipe] if recipe else {})  # a recipe's settings win over a profile's own (tiny's lr)
    if model != "unet":
        base.pop("model_kwargs", None)  # base_channels is UNet's knob
    base.update(MODEL_PROFILES.get((profile, model), {}))
    if recipe is not None and recipe == PROFILE_RECIPES.get(profile):
        extra = dict(MODEL_RECIPES.get((profile, model), {}))
        if "model_kwargs" in extra:  # added to the sizes' kwargs (base_channels), not instead of them
            extra["model_kwargs"] = {**base.get("model_kwargs", {}), **extra["model_kwargs"]}
        base.update(extra)
    base.update(overrides)
    return TrainConfig.from_dict(base)

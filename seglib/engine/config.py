"""`TrainConfig`: every setting of a training run, validated before any work starts (presets: presets.py)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import NAME_MAX
from ..data import BORDER_MODES, DATASETS, check_split_fractions, parse_mask_values
from ..models import MODELS
from ..models.checks import check_base_channels, check_dropout, check_encoder_width
from .losses import LOSSES

__all__ = [
    "TrainConfig",
    "CHOICES",
    "OWN_CHOICES",
    "ON_CORRUPT",
    "SCHEDULERS",
    "number_list",
]

SCHEDULERS = ("none", "cosine", "onecycle", "step", "multistep")
# The settings that are decimal numbers, each checked to be one (and finite) before its range.
NUMBERS = (
    "lr", "weight_decay", "min_lr", "gamma", "pct_start", "ema_decay", "scale_jitter", "copy_paste",
    "threshold", "val_fraction", "test_fraction", "progressive_share",
)  # fmt: skip
MAX_IMAGE_SIZE = 4096  # far above any pet photo's side; a typo's 10**6 px would size a cache of terabytes
# The bytes a folder name keeps for what seglib adds to a run's name: "-2", "-3", ... for a new run of a used
# name, evaluate's results/evaluation/<run>-epoch_012-train
RUN_NAME_ROOM = 32
MAX_RUN_NAME = NAME_MAX - RUN_NAME_ROOM
ON_CORRUPT = ("raise", "skip")
# The settings that name one of a few options, and the constant each is checked against: validate() and
# the command line both read this map, so a new model, loss or scheduler reaches both.
CHOICES: dict[str, tuple[str, ...]] = {
    "model": tuple(sorted(MODELS)),
    "dataset": DATASETS,
    "border": BORDER_MODES,
    "on_corrupt": ON_CORRUPT,
    "scheduler": SCHEDULERS,
    "loss": LOSSES,
    "augmentation": ("default",),
}


@dataclass
class TrainConfig:
    """A training run. The defaults are the original's settings (the "full" profile)."""

    # model
    model: str = "unet"  # "unet" | "resnet34_unet"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"base_channels": 16}
    # data
    data_root: str = "data/oxford-iiit-pet"  # the Oxford-IIIT Pet root (official layout)
    dataset: str = "auto"  # "auto" (real, a folder, else synthetic) | "oxford-pet" | "synthetic" | "folder"
    synthetic_root: str = "data/synthetic-pets"  # the synthetic demo set, generated here on first use
    image_size: int = 256  # training and validation side in px (evaluate also scores the original size)
    progressive_sizes: list[int] | None = None  # the first epochs train at these smaller sizes (ascending)
    progressive_share: float = 0.5  # the share of the epochs at progressive_sizes (each an equal part)
    border: str = "pet"  # trimap border: "pet" (the original) | "ignore"
    augment: bool = True  # training augmentation: flip, rotation, colour jitter (and zoom, copy-paste)
    augmentation: str = "default"  # "default": seglib's (above); a name given to register_augmentation
    shuffle: bool = True  # a new training order every epoch (from seed and epoch); False: dataset order
    on_corrupt: str = "raise"  # an unreadable image or trimap: "raise" (naming it) | "skip" (counted)
    train_limit: int | None = None  # use only the first N training images (None: all)
    val_limit: int | None = None  # use only the first N validation images (None: all)
    mask_values: str = ""  # folder masks: object values ("255", "1,2", ">127", "#ff0000"); "": the one not 0
    val_fraction: float = 0.1  # folder data without splits/: the share of images that validate (seeded)
    test_fraction: float = 0.1  # folder data without splits/: the share of images held out for testing
    split_seed: int = 0  # folder data without splits/: seeds the split (each run writes it to <run>/splits/)
    # optimisation
    epochs: int = 50  # passes over the training images
    budget_minutes: float | None = None  # train within this many minutes, re-planning the epochs as it goes
    patience: int | None = None  # stop after this many epochs without a better val Dice (None: off)
    batch_size: int = 8  # images per optimizer step (per process under torchrun)
    lr: float = 1e-4  # AdamW learning rate (the schedulers' peak)
    weight_decay: float = 1e-4  # AdamW's decoupled weight decay
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
    threshold: float = 0.5  # probability above which a pixel is pet (validation Dice)
    seed: int = 42  # seeds the weights, the data order and the augmentation
    # machine
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    num_workers: int | None = None  # None: 0 on CPU (the model is the bottleneck), up to 8 on CUDA
    amp: bool | None = None  # mixed precision; None: on for CUDA and for a CPU with native bf16
    channels_last: bool | None = (
        None  # NHWC memory layout; None: NHWC on CUDA, the faster one on a CPU (probed)
    )
    device_data: bool | None = None  # uint8 batches, normalised and augmented on the device; None: on CUDA
    compile: bool | None = None  # torch.compile the model; None: on CUDA for long runs, off on a CPU
    cache: bool = True  # decode each image once into a memory-mapped cache at image_size (seglib.data.cache)
    cache_dir: str | None = None  # None: <output_dir>/../cache, e.g. results/cache
    deterministic: bool = True  # same seed, same data, same device -> same result (cuDNN autotuning off)
    sync_bn: bool = False  # under torchrun: BatchNorm statistics of the global batch (all processes)
    # output
    output_dir: str = "results/runs"  # runs land in <output_dir>/<run_name>
    run_name: str | None = None  # one folder name in output_dir, no "/"; None: "<model>-<scheduler>-<time>"
    overwrite: bool = False  # replace a run folder of the same name (False: a suffix -2, -3 ... is added)
    progress: bool = True  # progress bars and a line per epoch
    log_every: int = 10  # steps between progress-bar updates (each costs a device sync)
    checkpoint_every: int = 0  # also keep every N-th epoch's model in <run>/epochs/ (0: best, last only)
    use_wandb: bool = False  # also log to Weights & Biases (needs the wandb package)
    wandb_project: str = "seglib"  # the Weights & Biases project

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the parameter and the valid choices."""
        self._check_kinds()
        self._check_ranges()
        check_run_name(self.run_name)
        return self

    def _check_kinds(self) -> None:
        """The named choices, and each setting of the right kind (an int is not a bool, a bool not an int)."""
        for name, choices in CHOICES.items():
            _choice(name, getattr(self, name), choices)
        for name in ("epochs", "batch_size", "image_size", "step_size", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in NUMBERS:  # before the ranges compare them: "abc" < 0 is a TypeError naming nothing
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        ms = self.milestones
        if ms is not None and not (
            isinstance(ms, list | tuple) and all(isinstance(m, int) and not isinstance(m, bool) for m in ms)
        ):
            raise ValueError(f"milestones must be a list of epochs (integers), e.g. [30, 40]; got {ms!r}")
        # every switch, by its declared type: a config.json edited by hand says "no", which bool() reads as on
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise ValueError(f"{f.name} must be True or False, got {value!r}")
            if f.type == "bool | None" and not isinstance(value, bool | None):
                raise ValueError(f"{f.name} must be None (auto), True or False, got {value!r}")
        workers = self.num_workers
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
            raise ValueError(f"num_workers must be None or an integer >= 0, got {workers!r}")
        for name in ("train_limit", "val_limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or a positive integer, got {value!r}")
        patience = self.patience
        if patience is not None and (
            isinstance(patience, bool) or not isinstance(patience, int) or patience < 1
        ):
            raise ValueError(f"patience must be None (off) or a positive number of epochs, got {patience!r}")
        every = self.checkpoint_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(f"checkpoint_every must be an integer >= 0 (0: off), got {every!r}")
        budget = self.budget_minutes
        if budget is not None and not (
            isinstance(budget, int | float)
            and not isinstance(budget, bool)
            and math.isfinite(budget)
            and budget > 0
        ):
            raise ValueError(
                f"budget_minutes must be None (off) or a positive number of minutes, got {budget!r}"
            )

    def _check_ranges(self) -> None:
        """Each number within what it means (a probability, a decay, a size the encoders can take)."""
        if not (self.ema_decay == 0 or 0 < self.ema_decay < 1):
            raise ValueError(f"ema_decay must be 0 (off) or in (0, 1), e.g. 0.99; got {self.ema_decay!r}")
        parse_mask_values(self.mask_values)  # raises naming the item it cannot read
        check_split_fractions(self.val_fraction, self.test_fraction)
        if not 0 <= self.scale_jitter < 1:
            raise ValueError(f"scale_jitter must be in [0, 1), e.g. 0.25; got {self.scale_jitter!r}")
        if not 0 <= self.copy_paste <= 1:
            raise ValueError(f"copy_paste must be a probability in [0, 1], e.g. 0.5; got {self.copy_paste!r}")
        self._check_own_augmentation()
        if not 32 <= self.image_size <= MAX_IMAGE_SIZE:
            raise ValueError(
                f"image_size must be from 32 px (the encoders downsample 32x) to {MAX_IMAGE_SIZE}, "
                f"got {self.image_size}"
            )
        _check_progressive(self.progressive_sizes, self.progressive_share, self.image_size)
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"num_workers must be None or >= 0, got {self.num_workers!r}")
        self._check_milestones()
        self._check_schedule()
        _check_model_kwargs(self.model, self.model_kwargs)

    def _check_own_augmentation(self) -> None:
        """A user's augmentation runs in the data loader: seglib's alone has a version on the device."""
        own = self.augmentation
        if own == "default" or not self.augment:
            return
        if self.device_data:
            raise ValueError(
                f"device_data=True augments on the device with seglib's default augmentation; augmentation "
                f"{own!r} runs in the data loader: set device_data=False (or None)"
            )

    def _check_milestones(self) -> None:
        ms = self.milestones
        if ms is None:
            return
        if sorted(ms) != list(ms) or (ms and ms[0] < 1):
            raise ValueError(f"milestones must be increasing epochs from 1, e.g. [30, 40]; got {ms!r}")

    def _check_schedule(self) -> None:
        """The schedulers' settings as they mean: a decay, a floor below the peak, a warm-up share."""
        if not 0 < self.gamma <= 1:
            raise ValueError(
                f"gamma (the step schedulers' decay factor) must be in (0, 1], got {self.gamma!r}"
            )
        if not 0 <= self.min_lr < self.lr:
            raise ValueError(f"min_lr (cosine's floor) must be in [0, lr={self.lr}), got {self.min_lr!r}")
        if not 0 < self.pct_start < 1:
            raise ValueError(
                f"pct_start (onecycle's warm-up share) must be in (0, 1), got {self.pct_start!r}"
            )
        for name in ("seed", "split_seed"):  # split_seed None would draw another split at each reading
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")

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
        """A saved config (a run's config.json), with `overwrite` off: fit(TrainConfig.load(...)) trains the
        run again beside it, where a run saved with overwrite=True would remove the folder it came from."""
        return cls.from_dict({**json.loads(Path(path).read_text()), "overwrite": False})


def number_list(value: str | float | list[float] | tuple[float, ...], name: str) -> tuple[float, ...]:
    """A list parameter as numbers: "1,2,3" (a notebook's or the command line's text), one number (papermill's
    `-p budgets 12` passes it as a number) or a list; a ValueError naming `name` otherwise."""
    items = (
        value.split(",") if isinstance(value, str) else value if isinstance(value, list | tuple) else [value]
    )
    try:
        numbers = tuple(float(v) for v in items if not isinstance(v, str) or v.strip())
    except (TypeError, ValueError):
        raise ValueError(f'{name}={value!r}: give numbers separated by commas, e.g. "1,2,3"') from None
    if any(isinstance(v, bool) for v in items) or not all(math.isfinite(n) for n in numbers):
        raise ValueError(f'{name}={value!r}: give numbers separated by commas, e.g. "1,2,3"')
    return numbers


def _check_model_kwargs(model: str, kwargs: dict[str, Any]) -> None:
    """model_kwargs the model takes, checked before any work (not as a TypeError once the data is ready)."""
    if not isinstance(kwargs, dict):
        raise ValueError(f"model_kwargs must be a dict, e.g. {{'base_channels': 16}}; got {kwargs!r}")
    params = inspect.signature(MODELS[model]).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # a model built by a function taking any keyword (a wrapper): it says so itself
    takes = [p for p in params if p not in ("in_channels", "num_classes")]
    unknown = sorted(set(kwargs) - set(takes))
    if unknown:
        raise ValueError(f"model_kwargs {unknown} are not options of model {model!r}; it takes {takes}")
    _check_model_values(kwargs)


def _check_model_values(kwargs: dict[str, Any]) -> None:
    """The models' own checks, made here too: the models raise only once the data is cached."""
    try:
        check_base_channels(kwargs.get("base_channels", 64))
        check_dropout(kwargs.get("dropout", 0.0))
        check_encoder_width(kwargs.get("encoder_weights"), kwargs.get("base_channels", 64))
    except ValueError as e:
        raise ValueError(f"model_kwargs {e}") from None


def _check_progressive(sizes: list[int] | None, share: float, image_size: int) -> None:
    if not 0 < share < 1:
        raise ValueError(f"progressive_share must be in (0, 1), e.g. 0.5; got {share!r}")
    if sizes is None:
        return
    ok = isinstance(sizes, list | tuple) and all(
        isinstance(s, int) and not isinstance(s, bool) for s in sizes
    )
    if not ok or not sizes or list(sizes) != sorted(set(sizes)) or sizes[0] < 32 or sizes[-1] >= image_size:
        half = max(32, image_size // 2 // 16 * 16)  # a size of at least 32 below image_size
        example = (
            f"e.g. [{half}]"
            if half < image_size
            else f"none fits below image_size {image_size}: leave it out"
        )
        raise ValueError(
            f"progressive_sizes must be None (off) or increasing sizes in px from 32 up to below image_size "
            f"({image_size}), {example}; got {sizes!r}"
        )


def check_run_name(name: Any) -> None:
    """Raise ValueError unless `name` is None or one plain folder name: the run lands in
    <output_dir>/<name>, where "." (emptied with overwrite), "../x" or "a/b" would land elsewhere."""
    if name is None:
        return
    if not isinstance(name, str):
        raise ValueError(f"run_name must be None (named by model, scheduler and time) or text, got {name!r}")
    size = len(os.fsencode(name))
    why = (
        "is empty" if not name
        else "is no folder of its own" if name in (".", "..")
        else "has a folder separator in it" if any(s in name for s in _SEPARATORS)
        else "has a NUL character in it" if "\0" in name
        else f"is {size} bytes long, over the {MAX_RUN_NAME} a run's name may take beside seglib's suffixes "
        "(-2 for a second run of a name)" if size > MAX_RUN_NAME
        else ""
    )  # fmt: skip
    if why:
        shown = name if len(name) <= 60 else f"{name[:40]}...{name[-10:]}"
        raise ValueError(
            f"run_name {shown!r} {why}: it must be one plain folder name in output_dir, e.g. {_plain(name)!r}"
        )


_SEPARATORS = {"/", os.sep} | ({os.altsep} if os.altsep else set())


def one_folder(name: str) -> str:
    """`name` with its folder separators and NULs as "-": text that names one folder, not a path."""
    for bad in (*_SEPARATORS, "\0"):
        name = name.replace(bad, "-")
    return name


def _plain(name: str) -> str:
    """A plain folder name near `name`, for its error to give (`one_folder`), at most 60 bytes (an
    example, not the longest name taken)."""
    name = os.fsencode(one_folder(name).strip(".-"))[:60].decode(errors="ignore")  # no half a character
    return name or "unet-cosine-1"


# the choices a user's code may add to (seglib.engine.extend)
OWN_CHOICES = ("model", "loss", "scheduler", "augmentation")


def _choice(name: str, value: Any, choices: Any) -> None:
    if value not in choices:
        # a run of a model, loss or scheduler of the user's own, read by a process that has not registered it
        own = (
            f" (one of your own: seglib.engine.register_{name}({value!r}, ...) first)"
            if name in OWN_CHOICES
            else ""
        )
        raise ValueError(f"unknown {name} {value!r}; choose one of {list(choices)}{own}")

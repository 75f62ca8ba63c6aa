"""Presets: for each profile and model, every setting it trains with, written out whole.

A profile says how much a model trains (image size, epochs, images); a recipe says how (optimiser,
schedule, loss, augmentation, EMA, evaluation): the `RECIPE_KEYS` and, of `model_kwargs`, the
`RECIPE_MODEL_KWARGS` (a model's regularisers). `PRESETS[profile][model]` is one profile's settings
for one model, its own recipe (`PROFILE_RECIPE`) included, as literals: `git diff` on a preset shows
every value that changed, and tests/test_presets.py pins each.

The one rule of `config_from_profile(profile, recipe, **overrides)`: the preset when `recipe` is None
or the profile's own; with another recipe, the preset with its recipe-owned keys swapped for that
recipe's (`with_recipe`), so a model's own additions to its profile's recipe (the recommended models'
zoom, the UNet's dropout, the GPU profile's batch of 32) go with that recipe; then `overrides`. Settings no
preset names keep TrainConfig's defaults.
"""

from __future__ import annotations

import copy
from typing import Any

from ..models import MODELS
from .config import TrainConfig, _choice

__all__ = [
    "PRESETS",
    "PROFILES",
    "PROFILE_RECIPE",
    "RECIPES",
    "RECIPE_KEYS",
    "RECIPE_MODEL_KWARGS",
    "config_from_profile",
    "with_recipe",
]

# The TrainConfig keys a recipe owns, and the model_kwargs it owns (the sizes' base_channels stay).
RECIPE_KEYS = (
    "batch_size",
    "lr",
    "weight_decay",
    "scheduler",
    "pct_start",
    "loss",
    "border",
    "ema_decay",
    "scale_jitter",
    "copy_paste",
    "tta",
)
RECIPE_MODEL_KWARGS = ("dropout",)

# "original" is the original's recipe. "recommended" is what the recipe study (notebook 06) chose on the
# validation images of the real sample: per minute of CPU it beats the original at every budget it
# measured. A high peak lr needs the OneCycle warm-up; EMA smooths the noisy end of a short schedule.
RECIPES: dict[str, dict[str, Any]] = {
    "original": {
        "batch_size": 8,
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "scheduler": "none",
        "pct_start": 0.3,
        "loss": "bce",
        "border": "pet",
        "ema_decay": 0.0,
        "scale_jitter": 0.0,
        "copy_paste": 0.0,
        "tta": False,
    },
    "recommended": {
        "batch_size": 8,
        "lr": 2e-3,
        "weight_decay": 1e-4,
        "scheduler": "onecycle",
        "pct_start": 0.3,
        "loss": "bce_dice",
        "border": "pet",
        "ema_decay": 0.99,
        "scale_jitter": 0.0,
        "copy_paste": 0.0,
        "tta": False,
    },
}

# Each profile's own recipe; tiny has none of the two (its settings only check that everything runs).
PROFILE_RECIPE: dict[str, str | None] = {
    "full": "original",
    "recommended": "recommended",
    "quick": "recommended",
    "tiny": None,
    "gpu": "recommended",
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The original's settings (a GPU job): TrainConfig's defaults.
    "full": {
        "unet": {
            "model": "unet",
            "model_kwargs": {},
            "image_size": 256,
            "epochs": 50,
            "train_limit": None,
            "val_limit": None,
            "batch_size": 8,
            "lr": 1e-4,
            "weight_decay": 1e-4,
            "scheduler": "none",
            "pct_start": 0.3,
            "loss": "bce",
            "border": "pet",
            "ema_decay": 0.0,
            "scale_jitter": 0.0,
            "copy_paste": 0.0,
            "tta": False,
        },
        "resnet34_unet": {
            "model": "resnet34_unet",
            "model_kwargs": {},
            "image_size": 256,
            "epochs": 50,
            "train_limit": None,
            "val_limit": None,
            "batch_size": 8,
            "lr": 1e-4,
            "weight_decay": 1e-4,
            "scheduler": "none",
            "pct_start": 0.3,
            "loss": "bce",
            "border": "pet",
            "ema_decay": 0.0,
            "scale_jitter": 0.0,
            "copy_paste": 0.0,
            "tta": False,
        },
    },
    # The recommended recipe at the budget the recipe study chose (12 minutes of training on the sample's
    # training images on a 2-core CPU; docs/experiments/recipe_study.md). The UNet trains at width 16, at the size and epochs the
    # study chose on the validation images; at that width it fits its training images, so it also
    # trains with a random zoom of 0.75-1.25 and the paper's dropout at the end of its contracting path.
    # The ResNet34-UNet keeps the design's depth at half its widths: in the same minutes that buys 160 px
    # instead of 96, which the validation images preferred (issue 22), with the same zoom.
    "recommended": {
        "unet": {
            "model": "unet",
            "model_kwargs": {"base_channels": 16, "dropout": 0.2},
            "image_size": 160,
            "epochs": 70,
            "train_limit": None,
            "val_limit": None,
            "batch_size": 8,
            "lr": 2e-3,
            "weight_decay": 1e-4,
            "scheduler": "onecycle",
            "pct_start": 0.3,
            "loss": "bce_dice",
            "border": "pet",
            "ema_decay": 0.99,
            "scale_jitter": 0.25,
            "copy_paste": 0.0,
            "tta": False,
        },
        "resnet34_unet": {
            "model": "resnet34_unet",
            "model_kwargs": {"base_channels": 32},
            "image_size": 160,
            "epochs": 100,
            "train_limit": None,
            "val_limit": None,
            "batch_size": 8,
            "lr": 2e-3,
            "weight_decay": 1e-4,
            "scheduler": "onecycle",
            "pct_start": 0.3,
            "loss": "bce_dice",
            "border": "pet",
            "ema_decay": 0.99,
            "scale_jitter": 0.25,
            "copy_paste": 0.0,
            "tta": False,
        },
    },
    # Minutes on a 2-core CPU: it shrinks what costs FLOPs (UNet width 16 instead of 64: 16x fewer;
    # 128 px instead of 256: 4x fewer; fewer images and epochs) and trains with the recommended recipe,
    # which learns in so few steps. The ResNet34-UNet keeps the design's width: smaller images, fewer epochs.
    # The image counts were cut for CPUs without native bf16 (issue 22; docs/experiments/workbook.md).
    "quick": {
        "unet": {
            "model": "unet",
            "model_kwargs": {"base_channels": 16},
            "image_size": 128,
            "epochs": 8,
            "train_limit": 160,
            "val_limit": 60,
            "batch_size": 8,
            "lr": 2e-3,
            "weight_decay": 1e-4,
            "scheduler": "onecycle",
            "pct_start": 0.3,
            "loss": "bce_dice",
            "border": "pet",
            "ema_decay": 0.99,
            "scale_jitter": 0.0,
            "copy_paste": 0.0,
            "tta": False,
        },
        "resnet34_unet": {
            "model": "resnet34_unet",
            "model_kwargs": {},
            "image_size": 96,
            "epochs": 5,
            "train_limit": 120,
            "val_limit": 60,
            "batch_size": 8,
            "lr": 2e-3,
            "weight_decay": 1e-4,
            "scheduler": "onecycle",
            "pct_start": 0.3,
            "loss": "bce_dice",
            "border": "pet",
            "ema_decay": 0.99,
            "scale_jitter": 0.0,
            "copy_paste": 0.0,
            "tta": False,
        },
    },
    # Only checks that everything runs (tests, CI): the smallest sizes that still train and validate.
    "tiny": {
        "unet": {
            "model": "unet",
            "model_kwargs": {"base_channels": 4},
            "image_size": 32,
            "epochs": 2,
            "train_limit": 16,
            "val_limit": 8,
            "batch_size": 4,
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "scheduler": "onecycle",
            "pct_start": 0.3,
            "loss": "bce",
            "border": "pet",
            "ema_decay": 0.0,
            "scale_jitter": 0.0,
            "copy_paste": 0.0,
            "tta": False,
        },
        "resnet34_unet": {
            "model": "resnet34_unet",
            "model_kwargs": {},
            "image_size": 32,
            "epochs": 1,
            "train_limit": 8,
            "val_limit": 8,
            "batch_size": 4,
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "scheduler": "onecycle",
            "pct_start": 0.3,
            "loss": "bce",
            "border": "pet",
            "ema_decay": 0.0,
            "scale_jitter": 0.0,
            "copy_paste": 0.0,
            "tta": False,
        },
    },
    # One GPU (an H100 or H200): the original's models at the original's size on all the images, with the
    # recommended recipe at batch 32 (batch 8 leaves a GPU idle between its small steps). The epochs are
    # estimates from the measured throughput, to be measured whole: 02 + 03 + 04 within half the 10
    # minutes that issue 18 allows; the reasoning is in docs/gpu.md.
    "gpu": {
        "unet": {
            "model": "unet",
            "model_kwargs": {},
            "image_size": 256,
            "epochs": 15,
            "train_limit": None,
            "val_limit": None,
            "batch_size": 32,
            "lr": 2e-3,
            "weight_decay": 1e-4,
            "scheduler": "onecycle",
            "pct_start": 0.3,
            "loss": "bce_dice",
            "border": "pet",
            "ema_decay": 0.99,
            "scale_jitter": 0.0,
            "copy_paste": 0.0,
            "tta": False,
        },
        "resnet34_unet": {
            "model": "resnet34_unet",
            "model_kwargs": {},
            "image_size": 256,
            "epochs": 20,
            "train_limit": None,
            "val_limit": None,
            "batch_size": 32,
            "lr": 2e-3,
            "weight_decay": 1e-4,
            "scheduler": "onecycle",
            "pct_start": 0.3,
            "loss": "bce_dice",
            "border": "pet",
            "ema_decay": 0.99,
            "scale_jitter": 0.0,
            "copy_paste": 0.0,
            "tta": False,
        },
    },
}
PROFILES: tuple[str, ...] = tuple(PRESETS)  # "full" | "recommended" | "quick" | "tiny" | "gpu"


def with_recipe(settings: dict[str, Any], recipe: str) -> dict[str, Any]:
    """`settings` (a preset's, or a config's `to_dict()`) with the recipe-owned keys swapped for `recipe`'s.

    The model's own regularisers in `model_kwargs` (`RECIPE_MODEL_KWARGS`) go: no recipe sets them.
    """
    _choice("recipe", recipe, RECIPES)
    kwargs = settings.get("model_kwargs", {})
    kept = {k: v for k, v in kwargs.items() if k not in RECIPE_MODEL_KWARGS}
    return {**copy.deepcopy(settings), **RECIPES[recipe], "model_kwargs": copy.deepcopy(kept)}


def config_from_profile(profile: str = "full", recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """The TrainConfig of `PRESETS[profile][overrides.get("model", "unet")]`, with `recipe` (None: the
    profile's own) and `overrides` on top, by the rule in the module docstring.

    Profiles: "full" | "recommended" | "quick" | "tiny" | "gpu"; recipes: "original" | "recommended".
    """
    _choice("profile", profile, PROFILES)
    if recipe is not None:
        _choice("recipe", recipe, RECIPES)
    model = overrides.get("model", "unet")
    _choice("model", model, sorted(MODELS))
    if model not in PRESETS[profile]:  # registered since: a model's settings come from its presets
        raise ValueError(
            f"model {model!r} has no preset in profile {profile!r}: add PRESETS[{profile!r}][{model!r}] in "
            f"seglib/engine/presets.py (every profile needs one), or give all its settings in Python: "
            f"fit(TrainConfig(model={model!r}, ...))"
        )
    preset = PRESETS[profile][model]
    if recipe is None or recipe == PROFILE_RECIPE[profile]:
        settings = copy.deepcopy(preset)  # a config's model_kwargs must not be the preset's dict
    else:
        settings = with_recipe(preset, recipe)
    return TrainConfig.from_dict({**settings, **overrides})

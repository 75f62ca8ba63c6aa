"""The presets: each one's full config pinned, and the one rule of `config_from_profile`."""

import dataclasses

import pytest
import torch

from seglib.engine import CHOICES, PRESETS, PROFILES, RECIPES, TrainConfig, config_from_profile
from seglib.engine.presets import PROFILE_RECIPE, RECIPE_KEYS, RECIPE_MODEL_KWARGS
from seglib.models import MODELS

# What no preset sets: data, the other schedulers' parameters, machine and output (TrainConfig's defaults).
UNSET = {
    "data_root": "data/oxford-iiit-pet",
    "dataset": "auto",
    "synthetic_root": "data/synthetic-pets",
    "augment": True,
    "shuffle": True,
    "on_corrupt": "raise",
    "mask_values": "",
    "val_fraction": 0.1,
    "test_fraction": 0.1,
    "split_seed": 0,
    "budget_minutes": None,
    "patience": None,
    "augmentation": "default",
    "progressive_sizes": None,
    "progressive_share": 0.5,
    "min_lr": 0.0,
    "step_size": 10,
    "milestones": None,
    "gamma": 0.1,
    "threshold": 0.5,
    "seed": 42,
    "device": "auto",
    "num_workers": None,
    "amp": None,
    "channels_last": None,
    "device_data": None,
    "compile": None,
    "cache": True,
    "cache_dir": None,
    "deterministic": True,
    "sync_bn": False,
    "output_dir": "results/runs",
    "run_name": None,
    "overwrite": False,
    "progress": True,
    "log_every": 10,
    "checkpoint_every": 0,
    "use_wandb": False,
    "wandb_project": "seglib",
}
ORIGINAL = {
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
}
RECOMMENDED = {
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
}
# Every preset's sizes, written out; with its recipe's keys and UNSET, every TrainConfig field.
SIZES = {
    ("full", "unet"): {
        "model": "unet",
        "model_kwargs": {},
        "image_size": 256,
        "epochs": 50,
        "train_limit": None,
        "val_limit": None,
    },
    ("full", "resnet34_unet"): {
        "model": "resnet34_unet",
        "model_kwargs": {},
        "image_size": 256,
        "epochs": 50,
        "train_limit": None,
        "val_limit": None,
    },
    ("recommended", "unet"): {
        "model": "unet",
        "model_kwargs": {"base_channels": 16, "dropout": 0.2},
        "image_size": 160,
        "epochs": 70,
        "train_limit": None,
        "val_limit": None,
    },
    ("recommended", "resnet34_unet"): {
        "model": "resnet34_unet",
        "model_kwargs": {"base_channels": 32},
        "image_size": 160,
        "epochs": 100,
        "train_limit": None,
        "val_limit": None,
    },
    ("quick", "unet"): {
        "model": "unet",
        "model_kwargs": {"base_channels": 16},
        "image_size": 128,
        "epochs": 8,
        "train_limit": 160,
        "val_limit": 60,
    },
    ("quick", "resnet34_unet"): {
        "model": "resnet34_unet",
        "model_kwargs": {},
        "image_size": 96,
        "epochs": 5,
        "train_limit": 120,
        "val_limit": 60,
    },
    ("tiny", "unet"): {
        "model": "unet",
        "model_kwargs": {"base_channels": 4},
        "image_size": 32,
        "epochs": 2,
        "train_limit": 16,
        "val_limit": 8,
    },
    ("tiny", "resnet34_unet"): {
        "model": "resnet34_unet",
        "model_kwargs": {},
        "image_size": 32,
        "epochs": 1,
        "train_limit": 8,
        "val_limit": 8,
    },
    ("gpu", "unet"): {
        "model": "unet",
        "model_kwargs": {},
        "image_size": 256,
        "epochs": 15,
        "train_limit": None,
        "val_limit": None,
    },
    ("gpu", "resnet34_unet"): {
        "model": "resnet34_unet",
        "model_kwargs": {},
        "image_size": 256,
        "epochs": 20,
        "train_limit": None,
        "val_limit": None,
    },
}
TINY_RECIPE = {**ORIGINAL, "batch_size": 4, "lr": 1e-3, "scheduler": "onecycle"}  # tiny's own settings
# The recommended models' additions to their profile's recipe (in SIZES: the UNet's dropout).
ZOOM = {"scale_jitter": 0.25}
GPU_BATCH = {"batch_size": 32}  # the GPU profile's addition to its recipe
EXPECTED = {
    ("full", "unet"): {**UNSET, **SIZES["full", "unet"], **ORIGINAL},
    ("full", "resnet34_unet"): {**UNSET, **SIZES["full", "resnet34_unet"], **ORIGINAL},
    ("recommended", "unet"): {**UNSET, **SIZES["recommended", "unet"], **RECOMMENDED, **ZOOM},
    ("recommended", "resnet34_unet"): {
        **UNSET,
        **SIZES["recommended", "resnet34_unet"],
        **RECOMMENDED,
        **ZOOM,
    },
    ("quick", "unet"): {**UNSET, **SIZES["quick", "unet"], **RECOMMENDED},
    ("quick", "resnet34_unet"): {**UNSET, **SIZES["quick", "resnet34_unet"], **RECOMMENDED},
    ("tiny", "unet"): {**UNSET, **SIZES["tiny", "unet"], **TINY_RECIPE},
    ("tiny", "resnet34_unet"): {**UNSET, **SIZES["tiny", "resnet34_unet"], **TINY_RECIPE},
    ("gpu", "unet"): {**UNSET, **SIZES["gpu", "unet"], **RECOMMENDED, **GPU_BATCH},
    ("gpu", "resnet34_unet"): {**UNSET, **SIZES["gpu", "resnet34_unet"], **RECOMMENDED, **GPU_BATCH},
}


@pytest.mark.parametrize(("profile", "model"), list(EXPECTED), ids=lambda x: x)
def test_each_preset_is_pinned_whole(profile, model):
    expected = EXPECTED[profile, model]
    assert set(expected) == {f.name for f in dataclasses.fields(TrainConfig)}  # every field
    assert config_from_profile(profile, model=model).to_dict() == expected
    assert config_from_profile(profile, PROFILE_RECIPE[profile], model=model).to_dict() == expected
    preset = PRESETS[profile][model]
    assert preset == {k: v for k, v in expected.items() if k in preset}  # the literal itself, too


def test_the_recipes_and_profiles_are_pinned():
    assert RECIPES == {"original": ORIGINAL, "recommended": RECOMMENDED}
    assert set(RECIPE_KEYS) == set(ORIGINAL) and RECIPE_MODEL_KWARGS == ("dropout",)
    assert PROFILES == ("full", "recommended", "quick", "tiny", "gpu")
    assert PROFILE_RECIPE == {
        "full": "original",
        "recommended": "recommended",
        "quick": "recommended",
        "tiny": None,
        "gpu": "recommended",
    }
    assert config_from_profile("full") == TrainConfig()  # the original's settings are the defaults


def test_every_preset_is_written_out_whole():
    """The same keys in every preset, for every profile and every registered model."""
    keys = set(PRESETS["full"]["unet"])
    assert keys == {*SIZES["full", "unet"], *RECIPE_KEYS}
    for profile in PROFILES:
        assert set(PRESETS[profile]) == set(MODELS), profile
        for model, preset in PRESETS[profile].items():
            assert set(preset) == keys and preset["model"] == model, (profile, model)


def test_a_preset_trains_its_profiles_recipe():
    """Its recipe keys are its recipe's; only the recommended models add their own zoom (and the UNet its
    dropout), and the GPU profile its batch of 32."""
    for profile, recipe in PROFILE_RECIPE.items():
        for model, preset in PRESETS[profile].items():
            zoom = profile == "recommended"
            extra = {**(ZOOM if zoom else {}), **(GPU_BATCH if profile == "gpu" else {})}
            if recipe is not None:
                assert {k: preset[k] for k in RECIPE_KEYS} == {**RECIPES[recipe], **extra}, (profile, model)
            dropout = preset["model_kwargs"].get("dropout")
            assert dropout == (0.2 if zoom and model == "unet" else None), (profile, model)


@pytest.mark.parametrize("recipe", list(RECIPES))
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("model", list(MODELS))
def test_another_recipe_swaps_the_recipe_owned_keys_only(profile, recipe, model):
    cfg = config_from_profile(profile, recipe, model=model).to_dict()
    preset = EXPECTED[profile, model]
    if recipe == PROFILE_RECIPE[profile]:
        assert cfg == preset
        return
    sizes = {k: v for k, v in preset["model_kwargs"].items() if k != "dropout"}
    assert cfg == {**preset, **RECIPES[recipe], "model_kwargs": sizes}


def test_recipe_swap_examples():
    # The UNet's regularisation comes with the recommended recipe only, not with the original's it is
    # compared with; its sizes (width 16 at 160 px) stay.
    plain = config_from_profile("recommended", recipe="original", model="unet")
    assert (plain.image_size, plain.epochs, plain.model_kwargs, plain.scale_jitter) == (
        160,
        70,
        {"base_channels": 16},
        0.0,
    )
    # The recommended recipe at the original's 256 px, 50 epochs; the original recipe at the quick sizes.
    gpu = config_from_profile("full", recipe="recommended")
    assert (gpu.image_size, gpu.epochs, gpu.lr, gpu.ema_decay) == (256, 50, 2e-3, 0.99)
    q = config_from_profile("quick", recipe="original")
    assert (q.image_size, q.lr, q.scheduler, q.ema_decay, q.model_kwargs) == (
        128,
        1e-4,
        "none",
        0.0,
        {"base_channels": 16},
    )
    # A recipe's batch size and lr win over tiny's own settings.
    t = config_from_profile("tiny", recipe="original")
    assert (t.batch_size, t.lr, t.scheduler, t.image_size) == (8, 1e-4, "none", 32)


def test_overrides_come_last_and_bad_names_are_named():
    assert config_from_profile("quick", recipe="original", lr=5e-4).lr == 5e-4
    quick = config_from_profile("quick", epochs=3)
    assert quick.epochs == 3 and quick.model_kwargs == {"base_channels": 16}
    assert config_from_profile("quick", model="resnet34_unet").model_kwargs == {}
    assert config_from_profile("quick", model_kwargs={"base_channels": 8}).model_kwargs == {
        "base_channels": 8
    }
    with pytest.raises(
        ValueError,
        match=r"unknown profile 'fast'; choose one of \['full', 'recommended', 'quick', 'tiny', 'gpu'\]",
    ):
        config_from_profile("fast")
    with pytest.raises(
        ValueError, match=r"unknown recipe 'best'; choose one of \['original', 'recommended'\]"
    ):
        config_from_profile("quick", recipe="best")
    with pytest.raises(
        ValueError, match=r"unknown model 'segnet'; choose one of \['resnet34_unet', 'unet'\]"
    ):
        config_from_profile("quick", model="segnet")
    with pytest.raises(ValueError, match=r"unknown TrainConfig parameter\(s\) \['epoch'\]"):
        config_from_profile("full", epoch=3)


def test_a_model_registered_without_presets_is_named_as_such(monkeypatch):
    """A third model in MODELS without presets was refused as an "unknown model" by the CLI and the
    notebooks, while `train --help` listed it."""
    # registered as in seglib/models/__init__.py: the choices derived from MODELS at import include it
    monkeypatch.setitem(
        MODELS, "tinynet", lambda in_channels=3, num_classes=1: torch.nn.Conv2d(in_channels, 1, 1)
    )
    monkeypatch.setitem(CHOICES, "model", tuple(sorted(MODELS)))
    with pytest.raises(
        ValueError,
        match=r"model 'tinynet' has no preset in profile 'quick': add PRESETS\['quick'\]\['tinynet'\] in "
        r"seglib/engine/presets.py .* fit\(TrainConfig\(model='tinynet', ...\)\)",
    ):
        config_from_profile("quick", model="tinynet")
    assert TrainConfig(model="tinynet", model_kwargs={}).model == "tinynet"  # Python trains it as it is


def test_a_config_does_not_share_the_presets_dicts():
    cfg = config_from_profile("recommended", model="unet")
    cfg.model_kwargs["base_channels"] = 64
    swapped = config_from_profile("recommended", "original", model="unet")
    swapped.model_kwargs["base_channels"] = 64
    assert PRESETS["recommended"]["unet"]["model_kwargs"] == {"base_channels": 16, "dropout": 0.2}

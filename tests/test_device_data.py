"""The device data path: uint8 batches normalised and augmented where the model runs (seglib.data.device,
seglib.engine.batches), tested on the CPU; and the `compile` option."""

import re
import shutil

import numpy as np
import pytest
import torch
from conftest import tiny_train_config
from test_reliability import same_run
from torch import nn
from torch.utils.data import DataLoader

from seglib.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CorruptSampleError,
    DeviceAugment,
    EpochSampler,
    OxfordPetDataset,
    collate,
    eval_transform,
    normalize_table,
    normalize_uint8,
    uint8_transform,
)
from seglib.engine import TrainConfig, fit, load_checkpoint
from seglib.engine.batches import BatchPrep, ResidentLoader
from seglib.engine.compiled import COMPILE_MIN_STEPS, choose_compile
from seglib.engine.train import TrainingInterrupted
from seglib.metrics import IGNORE_INDEX
from seglib.models.unet import DoubleConv, Down, OutConv, Up

CPU = torch.device("cpu")


def _masks(n: int = 8, size: int = 48) -> torch.Tensor:
    """Two rectangles per image, at places that differ from image to image."""
    m = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    for i in range(n):
        m[i, :, 4 + i : 30 + i, 10:40] = 1
        m[i, :, 20:44, 2 + i : 9 + i] = 1
    return m


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """Channel 0 of normalised images back in [0, 1]."""
    return x[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]


def test_normalising_on_the_device_is_bit_identical_to_albumentations():
    img = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    host = eval_transform(40)(image=img[:, :40])["image"]
    device = normalize_uint8(uint8_transform(40)(image=img[:, :40])["image"][None], normalize_table())
    assert device.dtype == torch.float32 and torch.equal(device[0], host)
    with pytest.raises(ValueError, match="uint8"):
        normalize_uint8(host[None], normalize_table())


def test_device_augmentation_is_a_function_of_its_seed_and_leaves_the_rng_alone():
    aug, masks = DeviceAugment(scale_jitter=0.25), _masks()
    images = torch.randint(0, 256, (8, 3, 48, 48), dtype=torch.uint8)
    state = torch.get_rng_state()
    a, b, c = aug(images, masks, 7), aug(images, masks, 7), aug(images, masks, 8)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # Parameters per image, not per batch: eight copies of one mask come out in several ways.
    _, same = aug(images, masks[:1].repeat(8, 1, 1, 1), 7)
    assert len({tuple(m.flatten().tolist()) for m in same}) > 1


def test_the_gpus_all_images_way_augments_as_the_cpus_chosen_images_way():
    images, masks = torch.randint(0, 256, (16, 3, 40, 48), dtype=torch.uint8), _masks(16)[..., :40, :48]
    for seed in range(3):  # subset=False: every image computed and the drawn ones kept (no host sync)
        a = DeviceAugment(IGNORE_INDEX, scale_jitter=0.25, subset=True)(images, masks, seed)
        b = DeviceAugment(IGNORE_INDEX, scale_jitter=0.25, subset=False)(images, masks, seed)
        assert torch.allclose(a[0], b[0], atol=1e-5) and torch.equal(a[1], b[1])


def test_device_augmentation_keeps_image_and_mask_aligned():
    aug, masks = DeviceAugment(scale_jitter=0.25, colour_p=0.0), _masks(16)  # geometry only: the image
    # is its mask, in white
    for seed in range(3):
        x, m = aug(masks.repeat(1, 3, 1, 1) * 255, masks, seed)
        agree = ((_pixels(x) > 0.5).float() == m[:, 0]).float().mean(dim=(1, 2))
        assert agree.min() > 0.97, agree  # bilinear image edges against nearest mask edges
        assert not torch.equal(m, masks.float())  # something moved


@pytest.mark.parametrize("fill", [0, 255])
def test_warped_in_corners_take_the_mask_fill(fill):
    aug = DeviceAugment(mask_fill=fill, colour_p=0.0)
    ones = torch.ones(16, 1, 48, 48, dtype=torch.uint8)
    _, m = aug(torch.full((16, 3, 48, 48), 255, dtype=torch.uint8), ones, 3)
    values = set(m.unique().tolist())
    assert values <= {1.0, float(fill)} and float(fill) in values  # some of 16 images were rotated


def _uint8_val(root, border="pet", **kw) -> OxfordPetDataset:
    return OxfordPetDataset(root, "val", uint8_transform(32), border=border, **kw)


def test_the_resident_loader_gives_the_dataloaders_batches(synthetic_root, tmp_path):
    ds = _uint8_val(synthetic_root, border="ignore").use_cache(tmp_path / "cache", 32)
    sampler = EpochSampler(len(ds), shuffle=True, seed=3)
    sampler.set_epoch(2)
    loader = DataLoader(ds, batch_size=6, sampler=sampler, collate_fn=collate, drop_last=True)
    resident = ResidentLoader(ds, 6, sampler, CPU, drop_last=True)
    assert len(resident) == len(loader) == len(ds) // 6
    for a, b in zip(loader, resident, strict=True):
        assert a["image"].dtype == b["image"].dtype == torch.uint8
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert a["name"] == b["name"] and torch.equal(a["index"], b["index"])
    prep = BatchPrep(CPU, channels_last=True)
    images, masks = prep(next(iter(resident)))
    assert images.is_contiguous(memory_format=torch.channels_last) and masks.dtype == torch.float32


def test_the_resident_loader_skips_or_names_unreadable_images(synthetic_root, tmp_path):
    root = tmp_path / "pets"
    shutil.copytree(synthetic_root, root)
    first = OxfordPetDataset(root, "val")
    jpg = first.image_path(first.names[1])
    jpg.write_bytes(jpg.read_bytes()[:300])
    sampler = EpochSampler(len(first), shuffle=False)
    skip = _uint8_val(root, on_corrupt="skip").use_cache(tmp_path / "cache", 32)
    batch = next(iter(ResidentLoader(skip, 4, sampler, CPU)))
    assert len(batch["skipped"]) == 1 and batch["skipped"][0].startswith(first.names[1])
    assert batch["image"].shape[0] == 3 and first.names[1] not in batch["name"]
    strict = _uint8_val(root, on_corrupt="raise")
    strict.cache = skip.cache  # the same cache, read by a dataset that raises
    with pytest.raises(CorruptSampleError, match=first.names[1]):
        next(iter(ResidentLoader(strict, 4, sampler, CPU)))


def test_device_augmentation_draws_the_recipes_odds_and_leaves_undrawn_images_as_they_are():
    aug = DeviceAugment(scale_jitter=0.25)
    table, order = aug.parameters(4000, 48, 48, seed=5)
    flip, warp, jitter = table[:, :3].mean(0).tolist()
    assert abs(flip - 0.5) < 0.03 and abs(jitter - 0.5) < 0.03
    assert abs(warp - (1 - 0.7 * 0.5)) < 0.03  # rotated (0.3) or zoomed (0.5)
    assert sorted(order) == [0, 1, 2, 3]
    images, masks = torch.randint(0, 256, (64, 3, 48, 48), dtype=torch.uint8), _masks(64)
    x, m = aug(images, masks, 9)
    table, _ = aug.parameters(64, 48, 48, 9)
    untouched, jittered_only = (table[:, :3] == 0).all(1), (table[:, :3] == torch.tensor([0, 0, 1])).all(1)
    assert untouched.any() and jittered_only.any()
    plain = normalize_uint8(images, normalize_table())
    assert torch.allclose(x[untouched], plain[untouched], atol=1e-5)
    assert torch.equal(m[untouched | jittered_only], masks[untouched | jittered_only].float())
    assert (x[jittered_only] - plain[jittered_only]).abs().amax(dim=(1, 2, 3)).min() > 0.01


def test_settings_are_checked():
    with pytest.raises(ValueError, match="device_data must be None"):
        TrainConfig(device_data="yes")
    with pytest.raises(ValueError, match="compile must be None"):
        TrainConfig(compile=1)


def test_compile_is_chosen_from_device_and_run_length():
    cuda = torch.device("cuda")
    assert choose_compile(None, CPU, 10**6)[0] is False
    assert choose_compile(None, cuda, COMPILE_MIN_STEPS - 1)[0] is False
    assert choose_compile(None, cuda, COMPILE_MIN_STEPS) == (
        True,
        f"compile on (auto: {COMPILE_MIN_STEPS:,} steps)",
    )
    assert choose_compile(True, CPU, 1) == (True, "compile on (asked)")


@pytest.mark.slow
def test_without_augmentation_the_device_path_trains_exactly_as_the_host_path(
    synthetic_root, tmp_path, capsys
):
    runs = {}
    for on in (False, True):
        cfg = tiny_train_config(
            synthetic_root, tmp_path / str(on), device_data=on, augment=False, run_name="r"
        )
        runs[on] = fit(cfg)
    out = capsys.readouterr().out
    assert "data path host (Albumentations in 0 loader worker(s))" in out
    assert "data path device (uint8 cache resident on cpu" in out
    assert load_checkpoint(runs[True].run_dir / "last.pt")["config"]["device_data"] is True
    same_run(runs[False].run_dir, runs[True].run_dir)


@pytest.mark.slow
def test_the_device_path_learns(synthetic_root, tmp_path):
    cfg = tiny_train_config(
        synthetic_root, tmp_path, device_data=True, scale_jitter=0.2, epochs=6, train_limit=48, lr=3e-3
    )
    history = fit(cfg).history
    assert history.train_loss.iloc[-1] < history.train_loss.iloc[0] - 0.05
    assert history.val_dice.max() > history.val_dice.iloc[0]


@pytest.mark.slow
@pytest.mark.parametrize("stop_at", [5, 8])
def test_a_device_path_run_resumes_bit_identically(synthetic_root, tmp_path, loss_at_step, stop_at):
    # with dropout: the model's own random numbers resume on the device path too. Step 8 is epoch 2's
    # last (14 images in 4 batches): the resumed epoch has no training samples left, only validation.
    model = {"base_channels": 4, "dropout": 0.2}
    settings = {"run_name": "r", "epochs": 3, "train_limit": 14, "lr": 3e-3, "device_data": True}
    settings |= {"scale_jitter": 0.2, "border": "ignore", "model_kwargs": model}
    whole = fit(tiny_train_config(synthetic_root, tmp_path / "a", **settings))
    with pytest.raises(TrainingInterrupted):
        fit(
            tiny_train_config(synthetic_root, tmp_path / "b", **settings),
            loss_fn=loss_at_step("ctrl_c", stop_at),
        )
    # device_data unset: the resumed run takes its saved choice
    resumed = fit(
        tiny_train_config(synthetic_root, tmp_path / "b", **{**settings, "device_data": None}), resume=True
    )
    assert load_checkpoint(resumed.run_dir / "last.pt")["config"]["device_data"] is True
    same_run(whole.run_dir, resumed.run_dir)


class OneLevelUNet(nn.Module):
    """The UNet's own blocks at one level (DoubleConv, max-pool, ConvTranspose2d, pad, concat, 1x1 head):
    the layers a compiled UNet runs, in a graph a fraction of the size: compiling the whole UNet's shapes
    made this the suite's slowest test (docs/testing.md), its time nearly all inside torch.compile."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, base_channels: int = 4) -> None:
        super().__init__()
        self.inc = DoubleConv(in_channels, base_channels)
        self.down = Down(base_channels, 2 * base_channels)
        self.up = Up(2 * base_channels, base_channels)
        self.outc = OutConv(base_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.inc(x)
        return self.outc(self.up(self.down(skip), skip))


@pytest.mark.slow
def test_a_compiled_ladder_with_partial_batches_says_what_compiling_took_and_resumes_bit_identically(
    synthetic_root, tmp_path, loss_at_step, capsys, monkeypatch, own_model
):
    # The epochs train at 32 and then 40 px, on the device data path, and the 7 validation images in
    # batches of 4 end in a smaller batch: four shapes to compile, more than torch keeps here (its limit
    # lowered from 8 to 3). Each run starts with torch.compile's caches empty, as a new process would: the
    # resumed run (from epoch 2) must not depend on which shapes the process compiled before.
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 3)
    own_model("one_level_unet", OneLevelUNet)
    settings = {"run_name": "r", "epochs": 2, "train_limit": 16, "val_limit": 7, "lr": 3e-3, "compile": True}
    settings |= {"model": "one_level_unet"}
    settings |= {"image_size": 40, "progressive_sizes": [32], "progressive_share": 0.5, "device_data": True}

    def fresh_fit(out: str, **kw):
        torch._dynamo.reset()
        return fit(tiny_train_config(synthetic_root, tmp_path / out, **settings), **kw)

    whole = fresh_fit("a")
    out = capsys.readouterr().out
    assert "compile on (asked)" in out
    clock = [
        line for line in out.splitlines() if line.startswith("seglib: torch.compile: first training step ")
    ]
    assert re.fullmatch(  # the first of each kind and batch size (the ladder's next size is not timed)
        r"seglib: torch\.compile: first training step [\d.]+ s, first validation batch [\d.]+ s, "
        r"first validation batch of 3 images [\d.]+ s \(compiling included\)",
        clock[0],
    )
    with pytest.raises(TrainingInterrupted):
        fresh_fit("b", loss_fn=loss_at_step("ctrl_c", 5))
    resumed = fresh_fit("b", resume=True)
    again = fit(tiny_train_config(synthetic_root, tmp_path / "c", **settings))  # as a notebook runs it again
    assert torch._dynamo.config.recompile_limit == 3  # the room is the run's, not the process's
    assert list(whole.history.train_size) == [32, 40]
    assert load_checkpoint(resumed.run_dir / "last.pt")["config"]["compile"] is True
    same_run(whole.run_dir, resumed.run_dir)
    same_run(whole.run_dir, again.run_dir)


@pytest.mark.slow
def test_the_resident_cache_and_a_uint8_loader_train_alike(synthetic_root, tmp_path, capsys):
    runs = {}
    for cache in (True, False):  # no cache: uint8 samples from the loader, augmented on the device alike
        cfg = tiny_train_config(
            synthetic_root, tmp_path / str(cache), device_data=True, cache=cache, run_name="r"
        )
        runs[cache] = fit(cfg)
    assert "data path device (uint8 batches from 0 loader worker(s))" in capsys.readouterr().out
    same_run(runs[True].run_dir, runs[False].run_dir)


def test_the_caches_must_fit_together(synthetic_root, tmp_path, monkeypatch):
    from seglib.engine import batches

    ds = _uint8_val(synthetic_root).use_cache(tmp_path / "cache", 32)
    assert batches.resident_fits(CPU, ds, ds)
    room = batches.resident_bytes(ds) * 1.5 / batches.RESIDENT_SHARE  # one fits, two do not
    monkeypatch.setattr(batches.os, "sysconf", lambda name: room if name == "SC_PHYS_PAGES" else 1)
    assert batches.resident_fits(CPU, ds) and not batches.resident_fits(CPU, ds, ds)
    assert not batches.resident_fits(CPU, _uint8_val(synthetic_root))  # no cache


def test_device_augmentation_draws_the_host_recipes_ranges():
    # the device path drew hue in +-0.2 of the circle and one zoom for both axes; the host's ColorJitter
    # shifts hue by up to +-0.5 and its A.Affine zooms each axis by its own factor
    import albumentations as A

    host = A.ColorJitter()
    table, _ = DeviceAugment(scale_jitter=0.25).parameters(4000, 48, 48, seed=1)
    hue, brightness = table[:, 6], table[:, 3]
    assert hue.min() < host.hue[0] + 0.02 and hue.max() > host.hue[1] - 0.02
    assert brightness.min() >= host.brightness[0] and brightness.max() <= host.brightness[1]
    # Rotate 15 with p 0.3, as the host's A.Rotate: the angle from the warp's matrix (no zoom: a rotation)
    table, _ = DeviceAugment(scale_jitter=0.0).parameters(4000, 48, 48, seed=1)
    warped, theta = table[:, 1] == 1, table[:, 7:13]
    angle = torch.rad2deg(torch.atan2(theta[:, 3], theta[:, 0])).abs()
    assert 0.27 < warped.float().mean() < 0.33 and 14.5 < angle[warped].max() <= 15.0 + 1e-3
    assert angle[~warped].max() == 0
    square = torch.zeros(1, 1, 96, 96, dtype=torch.uint8)
    square[..., 28:68, 28:68] = 1
    images = (square * 255).expand(64, 3, 96, 96).contiguous()
    _, masks = DeviceAugment(scale_jitter=0.25)(images, square.expand(64, 1, 96, 96).contiguous(), 3)
    ratios = []
    for m in masks[:, 0] == 1:
        ys, xs = torch.nonzero(m, as_tuple=True)
        ratios.append(((ys.max() - ys.min() + 1) / (xs.max() - xs.min() + 1)).item())
    assert sum(abs(r - 1) > 0.1 for r in ratios) >= 5  # stretched, as the host's zoom stretches

"""Multi-scale test-time augmentation: `TTA(flip, scales)` in `evaluate`, `predict_logits` and the command
line scores what a by-hand average of the sizes gives, and bad scales say what to pass."""

from __future__ import annotations

import subprocess
import sys
import warnings

import albumentations as A
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from albumentations.pytorch import ToTensorV2

from seglib.cli import main
from seglib.data import OxfordPetDataset, eval_transform
from seglib.engine import TTA, evaluate, predict_logits, save_checkpoint
from seglib.engine.checkpoint import model_spec
from seglib.engine.tta import as_tta, tta_sizes
from seglib.metrics import confusion_counts, dice_from_counts
from seglib.models import build_model

FAST = {"device": "cpu", "amp": False, "progress": False}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("unet", base_channels=4).eval()


def _flipped(model, x, flip):
    logits = model(x)
    return (logits + model(x.flip(-1)).flip(-1)) / 2 if flip else logits


@torch.no_grad()
def by_hand(model, ds: OxfordPetDataset, i: int, size: int, others: list[int], flip: bool) -> torch.Tensor:
    """Image i's logits at its original size: the mean of the model's at `size` and at each of `others`
    (each from the original image, up-sampled to `size`), then up-sampled to the original."""
    image = ds.load_image(i)
    x = eval_transform(size)(image=image)["image"][None]
    total = _flipped(model, x, flip)
    for s in others:
        other = _flipped(model, eval_transform(s)(image=image)["image"][None], flip)
        total = total + F.interpolate(other, size=(size, size), mode="bilinear", align_corners=False)
    mean = total / (1 + len(others))
    return F.interpolate(mean, size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0]


def test_sizes_are_multiples_of_32_without_the_models_own():
    assert tta_sizes(160, TTA(scales=(1.2,))) == (192,)
    assert tta_sizes(96, TTA(scales=(1.2, 0.8))) == (128, 64)
    assert tta_sizes(128, TTA(scales=(1.1,))) == ()  # rounds back to 128 itself
    assert tta_sizes(64, TTA(scales=(0.1,))) == (32,)  # never below 32
    assert as_tta(True) == TTA(flip=True) and tta_sizes(160, True) == ()


@pytest.mark.parametrize("flip", [False, True])
def test_evaluate_scores_the_mean_of_the_sizes(model, synthetic_root, flip):
    ds = OxfordPetDataset(synthetic_root, "val", image_size=64, limit=5)
    tta = TTA(flip=flip, scales=(1.5, 0.5))
    df = evaluate(model, ds, batch_size=2, tta=tta, channels_last=False, **FAST)
    assert tta_sizes(64, tta) == (96, 32)
    for i, row in df.iterrows():
        logits = by_hand(model, ds, i, 64, [96, 32], flip)
        truth = torch.from_numpy(ds.load_mask(i))
        dice = dice_from_counts(*confusion_counts(logits[None], truth[None]))[0].item()
        assert row.dice == pytest.approx(dice, abs=1e-6), row["name"]
    plain = evaluate(model, ds, batch_size=2, tta=flip, channels_last=False, **FAST)
    assert not np.allclose(df.dice, plain.dice)  # the other sizes changed the scores


def test_cached_channels_last_and_device_data_evaluation_score_alike(model, synthetic_root, tmp_path):
    """A cached set's images are resized already: the other sizes still come from the original."""
    tta = TTA(flip=True, scales=(1.5,))
    ds = OxfordPetDataset(synthetic_root, "val", image_size=64, limit=5)
    plain = evaluate(model, ds, batch_size=2, tta=tta, channels_last=False, **FAST)
    cached = OxfordPetDataset(synthetic_root, "val", image_size=64, limit=5).use_cache(tmp_path, 64)
    fast = evaluate(model, cached, batch_size=3, tta=tta, channels_last=True, **FAST)
    assert np.allclose(fast.dice, plain.dice, atol=1e-5)
    device_path = evaluate(model, ds, batch_size=2, tta=tta, channels_last=False, device_data=True, **FAST)
    assert np.allclose(device_path.dice, plain.dice, atol=1e-6)  # uint8 at s, the other sizes as on the host


def test_predict_logits_is_evaluates_prediction(model, synthetic_root):
    ds = OxfordPetDataset(synthetic_root, "val", image_size=64, limit=2)
    tta = TTA(flip=True, scales=(1.5,))
    logits = predict_logits(model, ds.load_image(1), 64, "cpu", tta)
    assert torch.allclose(logits, by_hand(model, ds, 1, 64, [96], True), atol=1e-5)
    assert not logits.requires_grad  # no graph: a viewer keeping every image's logits keeps no activations


def test_bad_scales_and_transforms_say_what_to_pass(model, synthetic_root):
    for scales in [(1.0,), (0,), (-1.2,), (1.2, 1.2), ("2",)]:
        with pytest.raises(ValueError, match="distinct positive factors other than 1"):
            TTA(scales=scales)
    with pytest.raises(ValueError, match=r"a tuple of factors, e.g. scales=\(1.2,\), got 1.2"):
        TTA(scales=1.2)
    assert TTA(scales=[1.2]) == TTA(scales=(1.2,))
    with pytest.raises(ValueError, match="tta must be True, False or a TTA"):
        as_tta("flip")
    wide = A.Compose([A.Resize(64, 96), A.Normalize(), ToTensorV2()])  # no square size to scale
    ds = OxfordPetDataset(synthetic_root, "val", transform=wide, limit=2)
    with pytest.raises(ValueError, match=r"evaluate\(tta scales\).*eval_transform\(size\)"):
        evaluate(model, ds, tta=TTA(scales=(1.5,)), **FAST)


@pytest.mark.slow
def test_the_command_line_takes_tta_scales(model, synthetic_root, tmp_path):
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, model, model_spec(model, "unet", {"base_channels": 4}), config={"image_size": 64})
    base = [sys.executable, "-m", "seglib", "evaluate", "--model_path", str(ckpt), "--data_path"]
    base += [str(synthetic_root), "--split", "val", "--limit", "3", "--num_figures", "1", "--device", "cpu"]
    out = tmp_path / "eval"
    p = subprocess.run(
        [*base, "--output_dir", str(out), "--tta", "--tta_scales", "1.5"], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert (out / "per_image.csv").is_file()
    p = subprocess.run([*base, "--output_dir", str(out), "--tta_scales", "1"], capture_output=True, text=True)
    assert p.returncode != 0 and "--tta_scales: TTA scales (1.0,)" in p.stderr


def _unused_scale_warnings(run) -> list[warnings.WarningMessage]:
    """The warnings `run()` gives that name TTA scales adding no size, every one recorded."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        run()
    return [w for w in said if "no input size beside this model's" in str(w.message)]


def test_scales_that_add_no_size_are_named_once(model, synthetic_root):
    """1.2 and 0.8 round back to 64 px: they did nothing, and nothing said so."""
    ds = OxfordPetDataset(synthetic_root, "val", image_size=64, limit=3)
    said = _unused_scale_warnings(
        lambda: evaluate(model, ds, batch_size=2, tta=TTA(scales=(1.2, 1.5, 0.8)), **FAST)
    )
    assert len(said) == 1 and issubclass(said[0].category, UserWarning)
    assert str(said[0].message).startswith("TTA scales 1.2, 0.8: no input size beside this model's 64 px")
    assert "e.g. 1.5 (96 px) or 0.5 (32 px)" in str(said[0].message)
    assert said[0].filename == __file__  # the caller's line, not seglib's
    assert not _unused_scale_warnings(lambda: evaluate(model, ds, tta=TTA(scales=(1.5,)), **FAST))
    said = _unused_scale_warnings(
        lambda: predict_logits(model, ds.load_image(0), 64, "cpu", TTA(scales=(1.2,)))
    )
    assert len(said) == 1 and said[0].filename == __file__
    from seglib.engine.tta import unused_scales  # here: the warnings above are what it is about

    assert unused_scales(64, TTA(scales=(1.2, 1.5, 0.8, 1.4))) == (1.2, 0.8, 1.4)  # 1.4: 96 px, as 1.5
    assert unused_scales(160, TTA(scales=(1.2, 0.8))) == ()


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_the_command_line_names_tta_scales_that_add_nothing_once(command, model, synthetic_root, tmp_path):
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, model, model_spec(model, "unet", {"base_channels": 4}), config={"image_size": 64})
    args = [command, "--model_path", str(ckpt), "--data_path", str(synthetic_root), "--split", "val",
            "--limit", "3", "--num_figures", "2", "--device", "cpu", "--output_dir", str(tmp_path / "out"),
            "--tta_scales", "1.2", "1.5"]  # fmt: skip
    said = _unused_scale_warnings(lambda: main(args))  # not again for each image or figure
    assert len(said) == 1
    assert str(said[0].message).startswith("--tta_scales 1.2: no input size beside this model's 64 px")

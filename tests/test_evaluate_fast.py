"""`evaluate` without per-image host syncs gives exactly the table of the per-image code it replaced;
small sets take no loader workers; the uint8 data path (device_data=True) scores exactly as the host path."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import albumentations as A
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from albumentations.pytorch import ToTensorV2
from torch import nn
from torch.utils.data import DataLoader

from seglib.data import IGNORE_INDEX, OxfordPetDataset, collate, uint8_transform
from seglib.engine import evaluate
from seglib.metrics import confusion_counts, dice_from_counts, iou_from_counts
from seglib.models import build_model

# the module, not the function `seglib.engine.evaluate` that the package exports under its name
ev = importlib.import_module("seglib.engine.evaluate")
SMALL_EVAL = ev.SMALL_EVAL
COUNTS = ["height", "width", "tp", "fp", "fn", "tp_model", "fp_model", "fn_model"]
SCORES = ["dice", "iou", "dice_model", "iou_model", "fg_fraction", "pred_fraction"]
FAST = {"device": "cpu", "amp": False, "channels_last": False, "progress": False}


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """An untrained width-4 UNet: logits either side of 0 by a few 1e-3, so the threshold cuts every
    image into pet and background (up-sampling decides many pixels)."""
    torch.manual_seed(0)
    return build_model("unet", base_channels=4).eval()


def val_set(root: Path, border: str = "pet", limit: int | None = 7) -> OxfordPetDataset:
    return OxfordPetDataset(root, "val", image_size=32, border=border, limit=limit)


@torch.no_grad()
def reference_evaluate(
    model: nn.Module,
    dataset: OxfordPetDataset,
    batch_size: int,
    tta: bool,
    threshold: float = 0.5,
    amp: bool = False,
) -> pd.DataFrame:
    """The per-image code path `evaluate` had before (on the CPU, fp32 or each batch's forward under its
    own bf16 autocast): each image's logits up-sampled to its trimap's size, then four `.item()` calls per
    image."""
    dataset.return_full_mask = True
    rows = []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = model(batch["image"]).float()
        if tta:
            logits = (logits + model(batch["image"].flip(-1)).float().flip(-1)) / 2
        tp_m, fp_m, fn_m = confusion_counts(logits, batch["mask"], threshold)
        dice_m, iou_m = dice_from_counts(tp_m, fp_m, fn_m), iou_from_counts(tp_m, fp_m, fn_m)
        for j, full in enumerate(batch["mask_full"]):
            up = F.interpolate(logits[j : j + 1], size=full.shape, mode="bilinear", align_corners=False)
            tp, fp, fn = (c.item() for c in confusion_counts(up[:, 0], full[None], threshold))
            counts = torch.tensor(tp), torch.tensor(fp), torch.tensor(fn)
            valid = (full != IGNORE_INDEX).sum().item()
            entry = dataset.entries[int(batch["index"][j])]
            rows.append(
                {
                    "name": entry.name,
                    "breed": entry.breed,
                    "species": entry.species,
                    "height": full.shape[0],
                    "width": full.shape[1],
                    "dice": float(dice_from_counts(*counts)),
                    "iou": float(iou_from_counts(*counts)),
                    "dice_model": dice_m[j].item(),
                    "iou_model": iou_m[j].item(),
                    "tp": tp,
                    "fp": fp,
                    "fn": fn,
                    "fg_fraction": (tp + fn) / max(valid, 1),
                    "pred_fraction": (tp + fp) / max(valid, 1),
                    "tp_model": tp_m[j].item(),
                    "fp_model": fp_m[j].item(),
                    "fn_model": fn_m[j].item(),
                }
            )
    return pd.DataFrame(rows)


def assert_same_table(new: pd.DataFrame, old: pd.DataFrame, atol: float = 1e-6) -> None:
    assert list(new.columns) == list(old.columns)
    assert new[["name", "breed", "species"]].equals(old[["name", "breed", "species"]])
    assert (new[COUNTS].to_numpy() == old[COUNTS].to_numpy()).all()
    pd.testing.assert_frame_equal(new[SCORES], old[SCORES], check_exact=False, rtol=0, atol=atol)


def test_bf16_evaluation_matches_its_reference_and_sees_changed_weights(synthetic_root):
    """Under autocast the weights are cast once per call (not per batch): the table is the per-batch
    reference's, and a later call casts the weights as they are then."""
    torch.manual_seed(0)
    model = build_model("unet", base_channels=4).eval()
    bf16 = {**FAST, "amp": True}
    first = evaluate(model, val_set(synthetic_root), batch_size=3, device_data=False, **bf16)
    assert_same_table(first, reference_evaluate(model, val_set(synthetic_root), 3, False, amp=True))
    with torch.no_grad():  # the head's logits negated: every prediction flips
        for p in model.outc.parameters():
            p.neg_()
    second = evaluate(model, val_set(synthetic_root), batch_size=3, device_data=False, **bf16)
    assert_same_table(second, reference_evaluate(model, val_set(synthetic_root), 3, False, amp=True))
    assert (second.pred_fraction - (1 - first.pred_fraction)).abs().max() < 0.05


@pytest.mark.parametrize("batched", [False, True])  # True: CUDA's one-pass scoring, here on the CPU
@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("border", ["pet", "ignore"])
@pytest.mark.parametrize("tta", [False, True])
def test_evaluate_matches_the_per_image_reference(
    synthetic_root, model, tta, border, batch_size, batched, monkeypatch
):
    monkeypatch.setattr(ev, "BATCHED_SCORING", ("cuda", "cpu") if batched else ("cuda",))
    ds = val_set(synthetic_root, border)
    new = evaluate(model, ds, batch_size=batch_size, tta=tta, device_data=False, **FAST)
    old = reference_evaluate(model, val_set(synthetic_root, border), batch_size, tta)
    assert len(new) == 7 and new.name.tolist() == ds.names
    assert new.pred_fraction.between(0.01, 0.99).all()  # the threshold cuts every image: a real check
    if border == "ignore":
        assert (new.tp + new.fp + new.fn < new.height * new.width).all()  # border pixels left out
    assert_same_table(new, old)
    assert (new.dice == old.dice).all() and (new.dice_model == old.dice_model).all()  # in fact exact
    assert new.tp.dtype == old.tp.dtype and new.height.dtype == old.height.dtype


@pytest.mark.parametrize("batched", [False, True])
def test_evaluate_scores_at_the_threshold_given(synthetic_root, model, batched, monkeypatch):
    """Both resolutions' scores, on both scoring paths, at a threshold other than 0.5."""
    monkeypatch.setattr(ev, "BATCHED_SCORING", ("cuda", "cpu") if batched else ("cuda",))
    low = evaluate(model, val_set(synthetic_root), batch_size=3, threshold=0.499, device_data=False, **FAST)
    half = evaluate(model, val_set(synthetic_root), batch_size=3, device_data=False, **FAST)
    assert_same_table(low, reference_evaluate(model, val_set(synthetic_root), 3, False, threshold=0.499))
    assert low.pred_fraction.between(0.01, 0.99).all()  # it still cuts every image
    assert (low.pred_fraction > half.pred_fraction).all()  # the logits sit near 0: 0.499 takes more pet


def test_small_sets_take_no_workers_and_score_the_same(synthetic_root, model, monkeypatch):
    seen: list[Any] = []
    real = ev.eval_loader
    monkeypatch.setattr(ev, "eval_loader", lambda *a, **k: seen.append(a[3]) or real(*a, **k))
    # workers by default (the CUDA this stands in for; a CPU's default is none, which would prove nothing)
    monkeypatch.setattr(ev, "default_num_workers", lambda dev: 5)
    ds = val_set(synthetic_root)
    auto = evaluate(model, ds, batch_size=3, num_workers=None, **FAST)
    zero = evaluate(model, ds, batch_size=3, num_workers=0, **FAST)
    assert seen == [0, 0] and len(ds) <= SMALL_EVAL
    pd.testing.assert_frame_equal(auto, zero, check_exact=True)
    # a large set takes `default_num_workers`
    assert ev._eval_workers(None, SMALL_EVAL + 1, torch.device("cpu"), 1) == 5
    assert ev._eval_workers(None, SMALL_EVAL, torch.device("cpu"), 1) == 0
    assert ev._eval_workers(2, 10, torch.device("cpu"), 1) == 2


@pytest.mark.parametrize("border", ["pet", "ignore"])
@pytest.mark.parametrize("tta", [False, True])
def test_device_data_path_scores_as_the_host_path(synthetic_root, model, tta, border):
    ds = val_set(synthetic_root, border)
    host = evaluate(model, ds, batch_size=3, tta=tta, device_data=False, **FAST)
    device = evaluate(model, ds, batch_size=3, tta=tta, device_data=True, **FAST)
    pd.testing.assert_frame_equal(device, host, check_exact=True)
    assert isinstance(ds.transform.transforms[1], A.Normalize)  # the caller's set is untouched


def test_device_data_path_takes_a_uint8_set_and_channels_last(synthetic_root, model):
    ds = val_set(synthetic_root, limit=4)
    host = evaluate(model, ds, device_data=False, **FAST)
    as_bytes = val_set(synthetic_root, limit=4)
    as_bytes.transform = uint8_transform(32)  # what a device-path training run validates on
    for on in (False, True):
        df = evaluate(model, as_bytes, device_data=on, **FAST)
        pd.testing.assert_frame_equal(df, host, check_exact=True)
    cl = {on: evaluate(model, ds, device_data=on, **{**FAST, "channels_last": True}) for on in (False, True)}
    pd.testing.assert_frame_equal(cl[True], cl[False], check_exact=True)


def test_device_data_path_needs_a_resize(synthetic_root, model):
    ds = val_set(synthetic_root, limit=2)
    ds.transform = A.Compose([A.Normalize(), ToTensorV2()])
    with pytest.raises(ValueError, match=r"device_data=True.*A\.Resize.*device_data=False"):
        evaluate(model, ds, device_data=True, **FAST)


def test_auto_keeps_a_transform_it_cannot_swap(synthetic_root, model):
    assert ev._eval_device_data(None, uint8_transform(32), torch.device("cuda")) is True
    assert ev._eval_device_data(None, val_set(synthetic_root).transform, torch.device("cuda")) is True
    assert ev._eval_device_data(None, val_set(synthetic_root).transform, torch.device("cpu")) is False
    custom = A.Compose([A.Resize(32, 32), A.Normalize(mean=(0.5,) * 3, std=(0.5,) * 3), ToTensorV2()])
    assert ev._eval_device_data(None, custom, torch.device("cuda")) is False  # its own normalisation
    assert ev._eval_device_data(True, custom, torch.device("cpu")) is True  # asked for


def test_an_unreadable_image_is_left_out_with_a_warning_at_the_callers_line(model, tmp_path):
    from seglib.data import make_synthetic_pets

    root = make_synthetic_pets(tmp_path / "pets", n_trainval=20, n_test=2, seed=0)
    ds = OxfordPetDataset(root, "val", image_size=32, on_corrupt="skip")
    bad = ds.entries[0].name
    Path(ds.image_path(bad)).write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match=f"1 unreadable image\\(s\\) left out: {bad}") as caught:
        df = evaluate(model, ds, batch_size=2, **FAST)
    assert bad not in set(df.name) and len(df) == len(ds) - 1
    assert caught[0].filename == __file__  # the caller's line, not evaluate's or torch's


def test_a_threshold_outside_0_1_is_named(synthetic_root, model):
    """Notebook 04 with threshold 1.5 scored every image 0 and still named the better model."""
    with pytest.raises(ValueError, match=r"evaluate: threshold=1.5; give a probability in \(0, 1\)"):
        evaluate(model, val_set(synthetic_root, limit=2), threshold=1.5, **FAST)


def test_worst_indices_are_the_lowest_dice_worst_first(synthetic_root):
    """The `worst/` figures of `evaluate` and notebook 04: by dataset index (the table's rows need not be in
    dataset order), lowest Dice first."""
    from seglib.engine.evaluate import worst_indices

    ds = OxfordPetDataset(synthetic_root, "test")
    names = ds.names[:4]
    table = pd.DataFrame({"name": [names[2], names[0], names[3], names[1]], "dice": [0.9, 0.2, 0.5, 0.7]})
    assert worst_indices(table, ds, 2) == [0, 3]
    assert worst_indices(table, ds, 10) == [0, 3, 1, 2]

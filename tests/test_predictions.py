"""Predictions you can open: 0/255 masks at the original size, overlays, predictions.csv with Dice and
IoU when the truth is known; the same numbers as `evaluate`; the viewer's upload and `predict` alike."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from seglib.cli import main
from seglib.data import (
    CorruptSampleError,
    FolderDataset,
    image_files,
    make_synthetic_folder,
    read_folder_mask,
    trimap_to_mask,
)
from seglib.engine import (
    evaluate,
    fit,
    load_model,
    model_image_size,
    predict,
    predict_dataset,
    predict_files,
    predict_image,
    predict_logits,
    save_checkpoint,
    save_prediction,
)
from seglib.engine.checkpoint import model_spec
from seglib.models import build_model
from seglib.plots import plot_overlay_grid, readable
from seglib.viewer import MaskViewer


class Ramp(nn.Module):
    """Logits rising from left to right: the right part of every image is the object."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1]
        return torch.linspace(-3, 3, w).expand(x.shape[0], 1, x.shape[-2], w).clone()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_folder(tmp_path_factory.mktemp("pred") / "mine", n=8, seed=1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A width-4 UNet, untrained: what the files hold matters here, not how good the masks are."""
    torch.manual_seed(0)
    model = build_model("unet", base_channels=4).eval()
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(path, model, model_spec(model, "unet", {"base_channels": 4}), config={"image_size": 32})
    return path


def test_a_prediction_is_written_as_files_you_can_open(tmp_path):
    photo = np.full((90, 120, 3), 128, np.uint8)
    pred = predict_image(Ramp(), photo, "my_cat", image_size=64, device="cpu")
    row = save_prediction(pred, tmp_path)
    mask = np.asarray(Image.open(tmp_path / "my_cat_mask.png"))
    assert mask.shape == (90, 120) and set(np.unique(mask)) == {0, 255}  # visible, at the original size
    assert mask[:, -1].all() and not mask[:, 0].any()
    shown = np.asarray(Image.open(tmp_path / "my_cat_overlay.png"))
    assert shown.shape == (90, 120, 3) and not np.array_equal(shown[:, 0], shown[:, -1])
    assert row == {
        "name": "my_cat",
        "width": 120,
        "height": 90,
        "pred_fraction": pytest.approx((mask == 255).mean()),
        "mask": "my_cat_mask.png",
        "overlay": "my_cat_overlay.png",
    }
    truth = np.zeros((90, 120), np.uint8)
    truth[:, 60:] = 1
    scored = pred.row(0.5, truth)
    assert scored["dice"] == pytest.approx(1.0) and scored["iou"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"my_cat: the truth mask is 60x40, its image 120x90"):
        pred.row(0.5, np.zeros((40, 60), np.uint8))
    # at another threshold, the overlay shows the mask written beside it (the Ramp's 0.3 reaches further left)
    save_prediction(pred, tmp_path / "t03", threshold=0.3)
    mask03 = np.asarray(Image.open(tmp_path / "t03" / "my_cat_mask.png")) == 255
    assert mask03.sum() > (mask == 255).sum()
    assert np.array_equal(np.asarray(Image.open(tmp_path / "t03" / "my_cat_overlay.png")), pred.overlay(0.3))
    # the truth's ignored border (255) is in no fraction: the fractions are of the pixels scored
    unsure = truth.copy()
    unsure[:, :30] = 255
    scored = pred.row(0.5, unsure)
    assert scored["fg_fraction"] == pytest.approx(60 / 90) and scored["pred_fraction"] == pytest.approx(
        60 / 90
    )


def test_a_cutout_keeps_the_object_and_reads_back_as_its_mask(tmp_path):
    """`--cutout`: the photo with a transparent background; read as a folder mask (by its alpha) it gives
    the predicted mask back, so cutouts can serve as training masks."""
    photo = np.random.default_rng(0).integers(0, 255, (90, 120, 3), np.uint8)
    pred = predict_image(Ramp(), photo, "my_cat", image_size=64, device="cpu")
    row = save_prediction(pred, tmp_path, cutout=True)
    assert row["cutout"] == "my_cat_cutout.png"
    cut = np.asarray(Image.open(tmp_path / "my_cat_cutout.png"))
    assert cut.shape == (90, 120, 4) and np.array_equal(cut[..., :3], photo)
    assert np.array_equal(cut[..., 3], pred.mask() * 255)
    assert np.array_equal(trimap_to_mask(read_folder_mask(tmp_path / "my_cat_cutout.png")), pred.mask())
    assert "cutout" not in save_prediction(pred, tmp_path / "plain")  # only when asked
    save_prediction(pred, tmp_path / "high", threshold=0.7, cutout=True)  # the cutout is cut as the mask is
    high = np.asarray(Image.open(tmp_path / "high" / "my_cat_mask.png"))
    assert (high != pred.mask() * 255).any()  # 0.7 cuts elsewhere than 0.5: the check can fail
    assert np.array_equal(np.asarray(Image.open(tmp_path / "high" / "my_cat_cutout.png"))[..., 3], high)


def test_a_phone_photo_is_predicted_upright(tmp_path):
    """A photo stored sideways with EXIF orientation 6 (as phones store portraits) is predicted as viewers
    show it, so that its mask lies on the photo one sees; beside a truth of the stored size, as stored."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "portrait.jpg"
    Image.new("RGB", (120, 90), (90, 60, 30)).save(path, exif=exif)  # stored 120x90, shown 90x120
    pred = predict_image(Ramp(), path, image_size=64, device="cpu")
    assert pred.image.shape == (120, 90, 3) and pred.mask().shape == (120, 90)
    with Image.open(path) as opened:  # a PIL image, as the viewer's upload box passes it: upright too
        assert predict_image(Ramp(), opened, "portrait", image_size=64, device="cpu").image.shape == (
            120,
            90,
            3,
        )
    df = predict_files(Ramp(), [path], tmp_path / "shown", 64, device="cpu")
    assert (df.width[0], df.height[0]) == (90, 120)
    assert Image.open(tmp_path / "shown" / "portrait_mask.png").size == (90, 120)
    truth = np.zeros((90, 120), np.uint8)  # drawn on the stored pixels: their right half, as Ramp predicts
    truth[:, 60:] = 1
    df = predict_files(
        Ramp(),
        [path],
        tmp_path / "stored",
        64,
        device="cpu",
        truths={"portrait": path},
        read_truth=lambda p: truth,
    )
    assert (df.width[0], df.height[0]) == (120, 90) and df.dice[0] == pytest.approx(1.0)


def test_a_16_bit_photo_is_predicted_on_its_range():
    deep = np.linspace(0, 65535, 30 * 40).reshape(30, 40).astype(np.uint16)
    pred = predict_image(Ramp(), Image.fromarray(deep), image_size=32, device="cpu")  # PIL mode I;16
    assert np.array_equal(pred.image[..., 1], (deep >> 8).astype(np.uint8))


def test_predictions_of_a_split_score_as_evaluate_does(folder, checkpoint, tmp_path):
    model = load_model(checkpoint)
    test = FolderDataset(folder, "trainval", image_size=32, limit=4)
    table = predict_dataset(model, test, tmp_path, 32, device="cpu")
    scores = evaluate(model, test, device="cpu", amp=False, channels_last=False, progress=False)
    assert list(table.name) == list(scores.name)
    assert np.allclose(table.dice, scores.dice, atol=1e-6) and np.allclose(table.iou, scores.iou, atol=1e-6)
    assert np.allclose(table.fg_fraction, scores.fg_fraction) and np.allclose(
        table.pred_fraction, scores.pred_fraction
    )
    on_disk = pd.read_csv(tmp_path / "predictions.csv")
    assert list(on_disk.columns) == [
        "name", "width", "height", "pred_fraction", "fg_fraction", "dice", "iou", "mask", "overlay"
    ]  # fmt: skip
    for _, row in on_disk.iterrows():
        mask = Image.open(tmp_path / row["mask"])
        assert mask.size == (row.width, row.height) and mask.mode == "L"


def test_the_viewers_upload_box_predicts_as_predict_does(folder):
    ds = FolderDataset(folder, "trainval", image_size=64)
    viewer = MaskViewer(ds, model=Ramp(), image_size=64, device="cpu")
    buf = io.BytesIO()
    Image.fromarray(np.full((50, 70, 3), 90, np.uint8)).save(buf, format="PNG")
    viewer.upload.value = (
        {"name": "mine.png", "type": "image/png", "size": buf.tell(), "content": memoryview(buf.getvalue()),
         "last_modified": datetime.now(UTC)},
    )  # fmt: skip
    uploaded = viewer.upload_prediction
    direct = predict_image(Ramp(), Image.open(buf), "mine", 64, "cpu")
    assert uploaded is not None and uploaded.name == "mine"
    assert torch.equal(uploaded.logits, direct.logits)
    assert np.array_equal(viewer.render(), direct.overlay(0.5, viewer.opacity.value))
    assert "mine.png" in viewer.status.value and "object" in viewer.status.value


def test_the_command_line_predicts_a_folder_with_its_truth(folder, checkpoint, tmp_path, capsys):
    main(
        ["predict", "--model_path", str(checkpoint), "--input", str(folder / "images"),
         "--masks", str(folder / "masks"), "--output_dir", str(tmp_path / "out"), "--device", "cpu"]
    )  # fmt: skip
    table = pd.read_csv(tmp_path / "out" / "predictions.csv").set_index("name")
    assert len(table) == 8 and table.dice.notna().all()
    # scored as evaluate scores the folder's photos in fp32 (each mask form read as the data set reads it)
    common = {"device": "cpu", "amp": False, "channels_last": False, "progress": False}
    model = load_model(checkpoint)
    splits = [
        evaluate(model, FolderDataset(folder, s, image_size=32), **common) for s in ("trainval", "test")
    ]
    scores = pd.concat(splits).set_index("name").loc[table.index]
    assert np.allclose(table.dice, scores.dice, atol=1e-6) and np.allclose(table.iou, scores.iou, atol=1e-6)
    assert len(list((tmp_path / "out").glob("*_mask.png"))) == 8
    assert len(list((tmp_path / "out").glob("*_overlay.png"))) == 8
    assert "8 with their truth" in capsys.readouterr().out
    # Without --masks: no truth, no Dice; a single file works as well.
    one = next((folder / "images").iterdir())
    main(
        [
            "predict",
            "--model_path",
            str(checkpoint),
            "--input",
            str(one),
            "--output_dir",
            str(tmp_path / "one"),
        ]
    )
    assert list(pd.read_csv(tmp_path / "one" / "predictions.csv").columns) == [
        "name", "width", "height", "pred_fraction", "mask", "overlay"
    ]  # fmt: skip


def _photos_and_masks(tmp_path: Path, photos: tuple[str, ...], masks: tuple[str, ...]) -> tuple[Path, Path]:
    """40x30 photos and their all-object masks, named as given, in tmp_path/photos and tmp_path/masks."""
    (tmp_path / "photos").mkdir(), (tmp_path / "masks").mkdir()
    for name in photos:
        Image.new("RGB", (40, 30), (200, 100, 50)).save(tmp_path / "photos" / name)
    for name in masks:
        Image.new("L", (40, 30), 255).save(tmp_path / "masks" / name)
    return tmp_path / "photos", tmp_path / "masks"


def test_predictions_csv_keeps_its_column_order_whichever_photo_has_a_truth(tmp_path):
    photos, masks = _photos_and_masks(tmp_path, ("a.png", "b.png"), ("b.png",))
    read = lambda path: (np.asarray(Image.open(path)) > 0).astype(np.uint8)  # noqa: E731
    table = predict_files(
        Ramp(), image_files(photos), tmp_path / "out", 32, 0.5, "cpu", False, {"b": masks / "b.png"}, read
    )
    columns = ["name", "width", "height", "pred_fraction", "fg_fraction", "dice", "iou", "mask", "overlay"]
    assert list(table.columns) == columns == list(pd.read_csv(tmp_path / "out" / "predictions.csv").columns)
    assert table.dice.isna().tolist() == [True, False]  # a first, without a truth: its columns came first


def test_masks_that_pair_with_no_photo_are_named(checkpoint, tmp_path, capsys):
    """--masks of other names (another case, a typo) were left unused, the photos unscored, unsaid."""
    photos, masks = _photos_and_masks(tmp_path, ("cat.png", "dog.png"), ("CAT.png", "dog_mask.png", "x.png"))
    args = ["predict", "--model_path", str(checkpoint), "--device", "cpu", "--input", str(photos)]
    main([*args, "--masks", str(masks), "--output_dir", str(tmp_path / "out")])
    said = capsys.readouterr().out
    assert f"--masks {masks}: 1 of 2 photos have no mask there, so no Dice: cat.png; a photo NAME.*" in said
    assert f"--masks {masks}: 2 masks pair with no photo: CAT.png, x.png" in said
    (masks / "dog_mask.png").unlink()
    with pytest.raises(
        SystemExit, match=r"none of the 2 photos has a mask there; .* it holds CAT.png, x.png"
    ):
        main([*args, "--masks", str(masks), "--output_dir", str(tmp_path / "none")])
    assert not (tmp_path / "none").exists()
    # the masks beside their photos (--masks is --input): there only NAME_mask.* pairs
    with pytest.raises(SystemExit, match=r"none of the 2 photos has a mask there; .* pairs with NAME_mask"):
        main([*args, "--masks", str(photos), "--output_dir", str(tmp_path / "beside")])


def test_a_truth_mask_of_another_size_stops_before_anything_is_written(tmp_path):
    """It stopped after writing the earlier photos' files (and none of the table), naming only the stem;
    now the mask file is named first, or with on_corrupt="skip" its photo is left out and named."""
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir(), masks.mkdir()
    for name, mask_size in (("a", (40, 30)), ("b", (20, 10)), ("c", (40, 30))):
        Image.new("RGB", (40, 30), (200, 100, 50)).save(photos / f"{name}.png")
        Image.new("L", mask_size, 1).save(masks / f"{name}.png")
    truths = {f.stem: f for f in masks.iterdir()}

    def read(path: Path) -> np.ndarray:
        return np.asarray(Image.open(path))

    args = (Ramp(), image_files(photos), tmp_path / "out", 32, 0.5, "cpu", False, truths, read)
    with pytest.raises(
        CorruptSampleError, match=r"masks/b.png: mask size 20x10 differs from its image's 40x30"
    ):
        predict_files(*args)
    assert not (tmp_path / "out").exists()
    with pytest.warns(UserWarning) as said:
        table = predict_files(*args, on_corrupt="skip")
    assert list(table.name) == ["a", "c"] and table.dice.notna().all()
    assert sorted(p.name for p in (tmp_path / "out").glob("*_mask.png")) == ["a_mask.png", "c_mask.png"]
    _says_the_mask_has_the_wrong_size(str(said[0].message), masks / "b.png", "b.png")
    b_only = (Ramp(), [photos / "b.png"], tmp_path / "none", 32, 0.5, "cpu", False, truths, read)
    with pytest.raises(
        ValueError, match=r"1 of 1 mask file\(s\) have the wrong size: .*nothing was predicted"
    ):
        predict_files(*b_only, on_corrupt="skip")


def test_an_unreadable_truth_mask_stops_before_anything_is_written_or_is_skipped(tmp_path):
    """It stopped part-way (the earlier photos' files written, no table), even with on_corrupt="skip"."""
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir(), masks.mkdir()
    for name in ("a", "b", "c"):
        Image.new("RGB", (40, 30), (200, 100, 50)).save(photos / f"{name}.png")
        Image.new("L", (40, 30), 255).save(masks / f"{name}.png")
    (masks / "c.png").write_bytes(b"")  # the last one: a and b would be written before it is read
    truths = {f.stem: f for f in masks.iterdir()}

    def read(path: Path) -> np.ndarray:
        return trimap_to_mask(read_folder_mask(path))

    args = (Ramp(), image_files(photos), tmp_path / "out", 32, 0.5, "cpu", False, truths, read)
    with pytest.raises(
        CorruptSampleError, match=r"masks/c.png: cannot read the mask .*nothing was predicted"
    ):
        predict_files(*args)
    assert not (tmp_path / "out").exists()
    with pytest.warns(
        UserWarning, match=r"1 of 3 mask file\(s\) could not be read as masks: .*c.png"
    ) as said:
        table = predict_files(*args, on_corrupt="skip")
    assert "their photos are left out" in str(said[0].message)
    assert list(table.name) == ["a", "b"] and table.dice.notna().all()


def _says_the_mask_has_the_wrong_size(message: str, mask: Path, photo: str) -> None:
    """The mask named with both sizes and the photo left out; not an unreadable photo to save again, nor
    on_corrupt='skip' advised to one who passed it."""
    assert (
        f"1 of 3 mask file(s) have the wrong size: {mask} is 20x10, its photo {photo} 40x30; their photos are "
        "left out (resize each mask to its photo's size" in message
    ), message
    assert not any(s in message for s in ("could not be read", "save them again", "on_corrupt")), message


def test_the_command_line_names_a_mask_of_the_wrong_size_it_skips(checkpoint, tmp_path):
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir(), masks.mkdir()
    for name, mask_size in (("a", (40, 30)), ("b", (20, 10)), ("c", (40, 30))):
        Image.new("RGB", (40, 30), (200, 100, 50)).save(photos / f"{name}.jpg")
        Image.new("L", mask_size, 255).save(masks / f"{name}.png")
    with pytest.warns(UserWarning) as said:
        main(["predict", "--model_path", str(checkpoint), "--input", str(photos), "--masks", str(masks),
              "--on_corrupt", "skip", "--output_dir", str(tmp_path / "out"), "--device", "cpu"])  # fmt: skip
    _says_the_mask_has_the_wrong_size(str(said[0].message), masks / "b.png", "b.jpg")
    assert list(pd.read_csv(tmp_path / "out" / "predictions.csv").name) == ["a", "c"]


def test_two_photos_of_one_name_are_refused_before_either_is_written(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for suffix in (".jpg", ".png"):
        Image.new("RGB", (40, 30), (200, 100, 50)).save(photos / f"cat{suffix}")
    with pytest.raises(ValueError, match=r"cat.jpg and .*cat.png would both write cat_mask.png; rename one"):
        predict_files(Ramp(), image_files(photos), tmp_path / "out", 32, device="cpu")
    assert not (tmp_path / "out").exists()


def test_a_name_too_long_for_its_outputs_is_refused_before_anything_is_written(checkpoint, tmp_path):
    """A 250-byte name is legal, NAME_overlay.png (262 bytes) is not: predict stopped at that photo with
    "File name too long", the photos before it written, half of its own outputs, and no predictions.csv."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    out.mkdir()
    long, fine = "ü" * 125, "é" * 100  # 250 and 200 bytes in UTF-8, 125 and 100 letters
    for name in ("a", "b", long, "z"):
        Image.new("RGB", (40, 30), (200, 100, 50)).save(photos / f"{name}.jpg")
    with pytest.raises(
        SystemExit, match=rf"1 image name\(s\) are too long .*: {long}.jpg \(7 bytes over\); rename"
    ):
        main(["predict", "--model_path", str(checkpoint), "--input", str(photos), "--output_dir", str(out),
              "--device", "cpu", "--cutout"])  # fmt: skip
    assert list(out.iterdir()) == []
    (photos / f"{long}.jpg").rename(photos / f"{fine}.jpg")
    df = predict_files(Ramp(), image_files(photos), out, 32, device="cpu", cutout=True, progress=False)
    assert fine in df.name.tolist() and (out / f"{fine}_overlay.png").exists()
    edge = "x" * 243  # NAME_overlay.png: 255 bytes, the limit itself, taken
    (photos / f"{fine}.jpg").rename(photos / f"{edge}.jpg")
    predict_files(Ramp(), image_files(photos), out, 32, device="cpu", cutout=True, progress=False)
    assert (out / f"{edge}_overlay.png").exists() and (out / f"{edge}_cutout.png").exists()
    root = tmp_path / "folder"  # predict --split: a data set's image of such a name
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
        Image.new("L", (40, 30), 255 if sub == "masks" else 90).save(root / sub / f"{long}.png")
    ds = FolderDataset(root, "trainval", image_size=32, val_fraction=0, test_fraction=0)
    with pytest.raises(ValueError, match=rf"{tmp_path / 'split'}: 1 image name.*{long} \(7 bytes over\)"):
        predict_dataset(Ramp(), ds, tmp_path / "split", 32, device="cpu", progress=False)
    assert not (tmp_path / "split").exists()


def test_a_damaged_photo_is_named_and_the_others_are_predicted(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 30), (200, 100, 50)).save(photos / "good.jpg")
    Image.new("RGB", (40, 30), (200, 100, 50)).save(photos / "cut.jpg")
    (photos / "cut.jpg").write_bytes((photos / "cut.jpg").read_bytes()[:200])  # a transfer that broke
    with pytest.warns(
        UserWarning, match=r"1 of 2 image\(s\) could not be read: cut.jpg \(.*\); they are left"
    ):
        df = predict_files(Ramp(), image_files(photos), tmp_path / "out", 32, device="cpu")
    assert df.name.tolist() == ["good"] and (tmp_path / "out" / "good_mask.png").exists()
    with pytest.raises(
        ValueError, match=r"1 of 1 image\(s\) could not be read: cut.jpg .*nothing was predicted"
    ):
        predict_files(Ramp(), [photos / "cut.jpg"], tmp_path / "none", 32, device="cpu")


def test_photos_pil_cannot_open_are_named_and_an_empty_input_refused(checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "IMG_0001.HEIC").write_bytes(b"not opened here")  # an iPhone's default format
    (photos / "notes.txt").write_text("left out quietly")
    (photos / "labelling-notes.pdf").write_bytes(b"%PDF-1.4")  # a format PIL writes but does not open
    (photos / "moved.jpg").symlink_to(tmp_path / "elsewhere.jpg")  # a link to a photo moved away
    args = ["predict", "--model_path", str(checkpoint), "--input", str(photos), "--output_dir", str(tmp_path)]
    with (
        pytest.warns(UserWarning, match=r"1 photo\(s\) in a format PIL cannot open here are left out "
                     r"\(IMG_0001.HEIC\); convert them to JPEG or PNG"),
        pytest.warns(UserWarning, match=r"photos: 1 link\(s\) to no file are left out \(moved.jpg\); point "
                     "them at their files or remove them"),
        pytest.raises(SystemExit, match=r"photos holds no image file that PIL opens \(jpg, [^;]*\)$"),
    ):  # fmt: skip
        main(args)
    (photos / "2024").mkdir()  # photos sorted into folders: they are not searched, and the message says so
    with (
        pytest.warns(UserWarning),
        pytest.raises(SystemExit, match=r"its subfolders \(2024\) are not searched"),
    ):
        main(args)
    Image.new("RGB", (40, 30), (200, 100, 50)).save(photos / "cat.png")  # beside photos: said, not silent
    with pytest.warns(UserWarning):
        main([*args, "--device", "cpu"])
    assert f"--input {photos}: its subfolders (2024) are not searched" in capsys.readouterr().out
    (photos / "2024").rmdir()
    with pytest.warns(UserWarning):
        main([*args, "--device", "cpu"])
    assert "subfolders" not in capsys.readouterr().out  # none left: nothing said of them


def test_the_command_line_predicts_a_split_of_a_folder(checkpoint, tmp_path):
    """Every image of the split (it predicted the first 10 by default), figures of the worst --num_figures."""
    root = make_synthetic_folder(tmp_path / "many", n=16, seed=2)
    train = FolderDataset(root, "train")
    args = ["predict", "--model_path", str(checkpoint), "--dataset", "folder", "--data_path", str(root),
            "--split", "train", "--device", "cpu", "--num_figures", "2"]  # fmt: skip
    main([*args, "--output_dir", str(tmp_path / "split")])
    table = pd.read_csv(tmp_path / "split" / "predictions.csv")
    assert list(table.name) == train.names and len(train) > 10 and table.dice.notna().all()
    worst = table.sort_values("dice", kind="stable").name[:2]
    assert sorted(p.stem for p in (tmp_path / "split" / "figures").glob("*.png")) == sorted(worst)
    main([*args, "--output_dir", str(tmp_path / "first"), "--limit", "3"])
    assert list(pd.read_csv(tmp_path / "first" / "predictions.csv").name) == train.names[:3]


def test_evaluate_leaves_out_a_damaged_image_and_shows_the_worst_of_the_rest(checkpoint, tmp_path):
    root = make_synthetic_folder(tmp_path / "mine", n=30, seed=3)
    test = FolderDataset(root, "test")
    assert len(test) == 3
    damaged = test.image_path(test.names[0])
    damaged.write_bytes(damaged.read_bytes()[:300])
    args = ["evaluate", "--model_path", str(checkpoint), "--dataset", "folder", "--data_path", str(root),
            "--output_dir", str(tmp_path / "eval"), "--device", "cpu", "--num_figures", "2"]  # fmt: skip
    with pytest.raises(
        SystemExit, match=r"cannot read the image .*, or pass --on_corrupt skip to leave such samples out \("
    ):
        main(args)
    with pytest.warns(UserWarning, match=rf"1 unreadable image\(s\) left out: {test.names[0]}"):
        main([*args, "--on_corrupt", "skip"])
    assert list(pd.read_csv(tmp_path / "eval" / "per_image.csv").name) == test.names[1:]
    # the worst images' figures: the two scored ones, found by name (not the damaged one at row 0)
    assert sorted(p.stem for p in (tmp_path / "eval" / "worst").glob("*.png")) == sorted(test.names[1:])
    # predict --split and the figures of the notebooks likewise
    pred_args = ["predict", "--model_path", str(checkpoint), "--dataset", "folder", "--data_path", str(root),
                 "--output_dir", str(tmp_path / "pred"), "--split", "test", "--on_corrupt", "skip"]  # fmt: skip
    with pytest.warns(UserWarning, match=rf"1 of 3 image\(s\) could not be read: {test.names[0]}"):
        main(pred_args)
    assert list(pd.read_csv(tmp_path / "pred" / "predictions.csv").name) == test.names[1:]
    assert sorted(p.stem for p in (tmp_path / "pred" / "figures").glob("*.png")) == sorted(test.names[1:])
    skipping = FolderDataset(root, "test", on_corrupt="skip")
    with pytest.warns(UserWarning, match=rf"1 unreadable image\(s\) not shown: {test.names[0]}"):
        assert readable(skipping, [0, 1, 2]) == [1, 2]
    with pytest.warns(UserWarning):
        assert len([a for a in plot_overlay_grid(skipping, [0, 1, 2]).axes if a.images]) == 2
    for name in test.names[1:]:  # every image damaged: nothing to score, said as such
        test.image_path(name).write_bytes(b"")
    with pytest.raises(SystemExit, match=r"evaluate: all 3 image\(s\) are unreadable, nothing to score"):
        main([*args, "--on_corrupt", "skip"])


@pytest.mark.parametrize("command", ["predict --input", "predict --split", "evaluate"])
def test_the_command_line_reads_the_checkpoint_once(command, checkpoint, folder, tmp_path, monkeypatch):
    reads: list[str] = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: reads.append(str(f)) or real(f, *a, **k))
    verb, *how = command.split()
    args = [verb, "--model_path", str(checkpoint), "--output_dir", str(tmp_path / "out"), "--device", "cpu"]
    if how == ["--input"]:
        args += ["--input", str(folder / "images")]
    else:  # the folder's test split, as the checkpoint's run would read it
        args += ["--dataset", "folder", "--data_path", str(folder), "--split", "test"]
    main(args)
    assert reads == [str(checkpoint)]  # size, mask values, data settings and weights from one read


def test_a_predictions_mask_and_row_agree_with_the_metrics_at_tiny_logits():
    # logits of +-5e-8: a float32 sigmoid makes both 0.5; the mask, its row and the Dice take the sign
    from seglib.engine import Prediction

    pred = Prediction("x", np.zeros((1, 2, 3), np.uint8), torch.tensor([[5e-8, -5e-8]]))
    assert pred.mask().tolist() == [[1, 0]]
    row = pred.row(truth=np.array([[1, 0]], np.uint8))
    assert row["dice"] == pytest.approx(1.0) and row["pred_fraction"] == 0.5


def test_predict_sees_images_at_the_size_the_model_was_trained_at(checkpoint, tiny_config):
    # the checkpoint's run trained at 32 px: predict() without a size used to take 256 (a reviewer's 64 px
    # model lost 0.11 Dice so), while the command line took the checkpoint's size
    photo = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    model = load_model(checkpoint)
    assert model_image_size(model) == 32 and model_image_size(model, 64) == 64
    assert np.array_equal(predict(model, photo, device="cpu"), predict(model, photo, 32, device="cpu"))
    assert not torch.equal(
        predict_logits(model, photo, device="cpu"), predict_logits(model, photo, 256, "cpu")
    )
    assert model_image_size(build_model("unet", base_channels=4)) == 256  # no run: the original's size
    run = fit(tiny_config(epochs=1, image_size=64))
    assert model_image_size(run.model) == 64 == model_image_size(load_model(run.best_checkpoint))


def test_a_split_image_whose_mask_has_another_size_is_left_out_with_its_own_advice(checkpoint, tmp_path):
    # it was told to save the photo again as JPEG or PNG; the mask's size is what to fix
    root = make_synthetic_folder(tmp_path / "mine", n=12, seed=4)
    train = FolderDataset(root, "train", on_corrupt="skip")
    name = train.names[0]
    mask = next((root / "masks").glob(f"{name}.*"))
    Image.open(mask).resize((7, 5), Image.NEAREST).save(mask)
    with pytest.warns(UserWarning, match="could not be read") as said:
        table = predict_dataset(load_model(checkpoint), train, tmp_path / "out", device="cpu")
    text = str(said[0].message)
    assert name in text and "nearest-neighbour" in text and "JPEG or PNG" not in text
    assert name not in set(table.name) and len(table) == len(train) - 1


def test_a_photo_over_pillows_pixel_limit_is_named_as_such_and_can_be_left_out(tmp_path, monkeypatch):
    """A 200-megapixel phone photo ended in Pillow's bare DecompressionBombError from the mask reader, even
    with on_corrupt="skip"; without masks, predict told to save it again as JPEG or PNG. Pillow's limit is
    lowered here so that 100x100 pixels stand for 200 megapixels."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)  # Pillow refuses more than twice this
    photos, masks = tmp_path / "images", tmp_path / "masks"  # a folder data set too
    photos.mkdir(), masks.mkdir()
    for name, size in (("huge", (100, 100)), ("small", (40, 30))):
        Image.new("RGB", size, (200, 100, 50)).save(photos / f"{name}.png")
        Image.new("L", size, 1).save(masks / f"{name}.png")
    too_large = r"Image size \(10000 pixels\) exceeds limit of 8000 pixels: more pixels than Pillow opens, downscale it"
    with pytest.raises(CorruptSampleError, match=rf"masks/huge.png: cannot read the mask \({too_large}"):
        read_folder_mask(masks / "huge.png")
    truths = {f.stem: f for f in masks.iterdir()}
    read = lambda path: read_folder_mask(path)  # noqa: E731
    with pytest.warns(UserWarning, match=rf"masks/huge.png: cannot read the mask \({too_large}"):
        table = predict_files(
            Ramp(),
            image_files(photos),
            tmp_path / "a",
            32,
            0.5,
            "cpu",
            False,
            truths,
            read,
            on_corrupt="skip",
        )
    assert list(table.name) == ["small"]
    with pytest.warns(UserWarning) as said:  # no masks: the photo itself is read, and left out
        table = predict_files(Ramp(), image_files(photos), tmp_path / "b", 32, 0.5, "cpu")
    message = str(said[0].message)
    assert list(table.name) == ["small"] and re.search(rf"huge.png \({too_large}", message), message
    assert "save them again as JPEG or PNG" not in message  # it is a JPEG or PNG: a large one
    ds = FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0)
    with pytest.raises(CorruptSampleError, match=rf"images/huge.png: cannot read the image \({too_large}"):
        ds.load_image(ds.names.index("huge"))


def test_predict_refuses_to_write_where_the_true_masks_are(checkpoint, tmp_path):
    """--output_dir at the --masks folder (or at a folder data set's masks/) replaced each NAME_mask.png,
    the truth, by the prediction."""
    photos, masks = _photos_and_masks(tmp_path, ("cat.png", "dog.png"), ("cat_mask.png", "dog_mask.png"))
    root = make_synthetic_folder(tmp_path / "mine", n=12, seed=3)
    before = {p: p.read_bytes() for folder in (masks, root / "masks") for p in folder.iterdir()}
    args = ["predict", "--model_path", str(checkpoint), "--device", "cpu"]
    with pytest.raises(SystemExit) as said:
        main([*args, "--input", str(photos), "--masks", str(masks), "--output_dir", str(masks)])
    assert f"{masks} holds the images or masks being predicted" in str(said.value.code)
    with pytest.raises(SystemExit) as said:
        main(
            [
                *args,
                "--dataset",
                "folder",
                "--data_path",
                str(root),
                "--split",
                "train",
                "--output_dir",
                str(root / "masks"),
            ]
        )
    assert "nothing was written" in str(said.value.code)
    with pytest.raises(ValueError, match=r"holds the images or masks being predicted"):
        predict_dataset(
            Ramp(), FolderDataset(root, "test"), root / "images", 32, device="cpu", progress=False
        )
    assert {p: p.read_bytes() for folder in (masks, root / "masks") for p in folder.iterdir()} == before

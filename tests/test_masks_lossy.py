"""Colour masks saved lossy (JPEG, lossy WebP): read as the object drawn, and mask_values that match no
pixel of a mask holding more than the background said, with colours that are in the file."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seglib.data import FolderDataset, MaskValueError

BOX = np.zeros((200, 300), bool)
BOX[40:160, 60:240] = True  # the object drawn: 21600 px
SMALL = np.zeros((48, 64), bool)
SMALL[13:33, 21:36] = True  # 300 px, off the codec's blocks: compression moves most of its edge


def write_pair(
    root: Path, name: str, colour: tuple[int, int, int], suffix: str, box: np.ndarray = BOX, **save: object
) -> Path:
    """An image and its mask: `box` in `colour` on black, saved as masks/NAME.<suffix> with `save`."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (*box.shape, 3), np.uint8)).save(root / "images" / f"{name}.png")
    mask = np.zeros((*box.shape, 3), np.uint8)
    mask[box] = colour
    path = root / "masks" / f"{name}.{suffix}"
    Image.fromarray(mask).save(path, **save)
    return path


def folder(root: Path, mask_values: str) -> FolderDataset:
    return FolderDataset(root, "trainval", mask_values=mask_values, val_fraction=0, test_fraction=0)


def assert_is_the_box(mask: np.ndarray, box: np.ndarray = BOX) -> None:
    found = mask == 1
    assert abs(int(found.sum()) - box.sum()) <= 0.03 * box.sum(), int(found.sum())
    assert (found & box).sum() / (found | box).sum() > 0.95


def test_a_jpeg_colour_mask_reads_as_the_box_drawn(tmp_path):
    for name in ("a", "b"):
        write_pair(tmp_path, name, (255, 0, 0), "jpg", quality=75)
    ds = folder(tmp_path, "#ff0000")
    for i in range(len(ds)):
        assert_is_the_box(ds.load_mask(i))


def test_a_cameras_mpo_mask_reads_as_a_jpeg_does(tmp_path):
    """A phone's or camera's JPEG is often MPO (several pictures): as lossy as a JPEG."""
    second = Image.new("RGB", BOX.shape[::-1])  # a second picture: one alone opens as a JPEG
    path = write_pair(tmp_path, "mpo", (255, 0, 0), "jpg", format="MPO", quality=75, save_all=True,
                      append_images=[second])  # fmt: skip
    assert Image.open(path).format == "MPO"
    assert_is_the_box(folder(tmp_path, "#ff0000").load_mask(0))


def test_a_dark_jpeg_colour_is_not_read_into_the_black_background(tmp_path):
    """#500000 lies near black: without the nearer-than-black rule most of the background read as object."""
    write_pair(tmp_path, "dark", (0x50, 0, 0), "jpg", quality=75)
    assert_is_the_box(folder(tmp_path, "#500000").load_mask(0))


def test_a_lossy_webp_white_mask_reads_as_the_box_drawn(tmp_path):
    write_pair(tmp_path, "w", (255, 255, 255), "webp", SMALL, quality=75)
    assert_is_the_box(folder(tmp_path, "#ffffff").load_mask(0), SMALL)
    assert_is_the_box(folder(tmp_path, ">127").load_mask(0), SMALL)  # grey saved as RGB, tinted: grey


def test_mask_values_matching_nothing_warn_once_naming_the_file_and_its_colour(tmp_path):
    for name in ("a", "b"):
        write_pair(tmp_path, name, (255, 0, 0), "jpg", quality=75)
    ds = folder(tmp_path, "#00ff00")
    with pytest.warns(
        UserWarning, match=r'a\.jpg: mask_values="#00ff00" matches no pixel.*#f[ef]0000'
    ) as got:
        masks = [ds.load_mask(i) for i in range(len(ds))]
    assert len(got) == 1  # once for the data set, not once a mask
    assert all(m.sum() == 0 for m in masks)
    # a lossless mask matches exactly: a near colour is not the one given
    write_pair(tmp_path / "png", "near", (250, 0, 0), "png")
    with pytest.warns(UserWarning, match=r'near\.png: mask_values="#ff0000" matches no pixel.*#fa0000'):
        assert folder(tmp_path / "png", "#ff0000").load_mask(0).sum() == 0


def test_an_all_black_mask_is_empty_without_a_word(tmp_path):
    write_pair(tmp_path, "empty", (0, 0, 0), "jpg", quality=75)
    write_pair(tmp_path, "box", (255, 0, 0), "jpg", quality=75)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        masks = [folder(tmp_path, "#ff0000").load_mask(i) for i in range(2)]
        assert folder(tmp_path, "").load_mask(1).sum() == 0  # "empty", without mask_values too
    assert masks[1].sum() == 0
    assert_is_the_box(masks[0])


@pytest.mark.parametrize("mask_values", [">127", ""])
def test_the_hint_names_a_colour_that_is_in_the_file_and_reads_the_box(tmp_path, mask_values):
    path = write_pair(tmp_path, "red", (255, 0, 0), "jpg", quality=75)
    with pytest.raises(MaskValueError, match=r"red\.jpg: ") as e:
        folder(tmp_path, mask_values).load_mask(0)
    hinted = re.search(r'e\.g\. mask_values="(#[0-9a-f]{6})"', str(e.value)).group(1)
    colour = [int(hinted[k : k + 2], 16) for k in (1, 3, 5)]
    assert (np.asarray(Image.open(path)) == colour).all(-1).any(), hinted  # a colour of the file
    assert_is_the_box(folder(tmp_path, hinted).load_mask(0))


def test_a_jpeg_mask_of_0_and_1_is_named_not_read_as_empty(tmp_path):
    """0/1 labels saved as JPEG lie within the noise taken for black: the masks read as all background, and
    the run trained to a Dice of 0 without a word (mask_values=">127" as well)."""
    (tmp_path / "images").mkdir(parents=True)
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((*BOX.shape, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(BOX.astype(np.uint8)).save(tmp_path / "masks" / "a.jpg", quality=90)
    for values in ("", ">127"):
        with pytest.raises(
            MaskValueError, match=r"a\.jpg: a lossy mask .* within its noise of black \(0 to \d+, "
        ):
            folder(tmp_path, values).load_mask(0)
    with pytest.raises(MaskValueError, match=r'save the masks as PNG, or .* pass mask_values=">0"'):
        folder(tmp_path, "").load_mask(0)
    assert_is_the_box(folder(tmp_path, ">0").load_mask(0))
    Image.fromarray(np.zeros(BOX.shape, np.uint8)).save(tmp_path / "masks" / "a.jpg", quality=90)
    assert not folder(tmp_path, "").load_mask(0).any()  # a black JPEG is an empty mask, not a faint one
    Image.fromarray(np.full(BOX.shape, 10, np.uint8)).save(tmp_path / "masks" / "a.jpg", quality=95)
    assert not folder(tmp_path, "").load_mask(0).any()  # nor one near black all over (an offset, one level)

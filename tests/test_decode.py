"""Images and trimaps decoded by TorchCodec (seglib.data.decode) are Pillow's pixels exactly; whatever it
does not take (other modes, formats, depths, damaged files) Pillow reads as before."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seglib.data import CorruptSampleError, find_root, open_rgb
from seglib.data.files import read_image, read_trimap

decode = importlib.import_module("seglib.data.decode")


def pillow_image(path: Path) -> np.ndarray:
    return np.asarray(open_rgb(path))


def pillow_values(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def same_as_pillow(root: Path, limit: int | None = None) -> int:
    """Every image and trimap of `root` read as Pillow reads it; returns how many pairs."""
    names = sorted(p.stem for p in (root / "images").glob("*.jpg"))[:limit]
    for name in names:
        jpg, png = root / "images" / f"{name}.jpg", root / "annotations" / "trimaps" / f"{name}.png"
        assert np.array_equal(read_image(jpg), pillow_image(jpg)), jpg
        assert np.array_equal(read_trimap(png), pillow_values(png)), png
    return len(names)


def test_the_synthetic_set_decodes_as_pillow_does(synthetic_root, monkeypatch):
    calls = []
    real = decode.decode_jpeg
    monkeypatch.setattr(decode, "decode_jpeg", lambda source, **kw: calls.append(1) or real(source, **kw))
    n = same_as_pillow(find_root(synthetic_root), limit=20)
    assert decode.DECODER == "torchcodec" and len(calls) == n == 20  # TorchCodec decoded every one


def test_the_real_sample_decodes_as_pillow_does(sample_root):
    assert same_as_pillow(find_root(sample_root)) > 100


def test_what_torchcodec_does_not_take_pillow_reads(tmp_path):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8))
    files = {"grey.jpg": rgb.convert("L"), "cmyk.jpg": rgb.convert("CMYK"), "png.jpg": rgb}
    for name, im in files.items():
        im.save(tmp_path / name, format="PNG" if name == "png.jpg" else "JPEG")
        read = read_image(tmp_path / name)
        assert read.shape == (40, 56, 3) and np.array_equal(read, pillow_image(tmp_path / name)), name
    values = (np.arange(40 * 56) % 3 + 1).astype(np.uint8).reshape(40, 56)
    palette = Image.fromarray(values, "P")
    palette.putpalette([0, 0, 0, 200, 10, 10, 10, 200, 10, 10, 10, 200])
    palette.save(tmp_path / "palette.png")
    palette.save(tmp_path / "clear.png", transparency=0)
    Image.fromarray(values, "L").save(tmp_path / "grey.png")
    for name in ("palette.png", "clear.png", "grey.png"):
        assert np.array_equal(read_trimap(tmp_path / name), pillow_values(tmp_path / name)), name
    Image.fromarray(values, "L").save(tmp_path / "grey2.png", bits=2)  # Pillow scales 2-bit levels
    with pytest.raises(CorruptSampleError, match=r"grey2.png: trimap values .* \[85, 170, 255\]"):
        read_trimap(tmp_path / "grey2.png")
    whole = (tmp_path / "cmyk.jpg").read_bytes()
    rgb.save(tmp_path / "cut.jpg", format="JPEG")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "cut.jpg").read_bytes()[: len(whole) // 2])
    with pytest.raises(CorruptSampleError, match="cut.jpg"):
        read_image(tmp_path / "cut.jpg")


@pytest.mark.parametrize("orientation", [3, 6])  # a half turn (the same shape) and a quarter turn
def test_a_file_with_an_exif_orientation_gives_its_stored_pixels(tmp_path, orientation):
    """TorchCodec turns such files upright; the readers give the stored pixels, which masks and trimaps
    drawn on them match (the folder data set turns both upright where it must)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    rng = np.random.default_rng(orientation)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "a.jpg", exif=exif)
    values = rng.integers(1, 4, (40, 56), dtype=np.uint8)
    Image.fromarray(values, "L").save(tmp_path / "a.png", exif=exif)
    image = read_image(tmp_path / "a.jpg")
    assert image.shape == (40, 56, 3) and np.array_equal(image, pillow_image(tmp_path / "a.jpg"))
    assert np.array_equal(read_trimap(tmp_path / "a.png"), values)

"""A folder of your own: images/ and masks/ paired by stem, every mask form, the split, and each bad case
with its message. The folders are written here (from the synthetic generator, or pixel by pixel)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seglib.data import (
    CorruptSampleError,
    EmptySplitError,
    FolderDataset,
    MaskValueError,
    MaskValueWarning,
    describe,
    empty_masks,
    find_pairs,
    make_synthetic_folder,
    open_split,
    parse_mask_values,
    resolve_data_root,
    seeded_split,
    write_splits,
)
from seglib.data.cache import build_cache
from seglib.engine import TrainConfig, evaluate
from seglib.engine.loaders import split_dataset
from seglib.viewer import MaskViewer

OBJECT = np.zeros((48, 64), np.uint8)
OBJECT[10:30, 20:50] = 1  # the known object of the hand-written pairs


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 synthetic pairs: JPEG and PNG images, masks in all four forms, no splits/."""
    return make_synthetic_folder(tmp_path_factory.mktemp("folder") / "mine", n=24, seed=0)


def write_pair(root: Path, name: str, mask: Image.Image, mask_name: str | None = None) -> None:
    """An image of the mask's size and the mask, as masks/<mask_name or name>.png."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    w, h = mask.size
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8)).save(
        root / "images" / f"{name}.png"
    )
    mask.save(root / "masks" / f"{mask_name or name}.png")


def palette(values: np.ndarray) -> Image.Image:
    im = Image.frombytes("P", values.shape[::-1], values.astype(np.uint8).tobytes())
    im.putpalette([0, 0, 0, 200, 30, 30, 30, 200, 30] + [0] * 759)
    return im


def rgb(mask: np.ndarray, colours: dict[int, tuple[int, int, int]]) -> Image.Image:
    out = np.zeros((*mask.shape, 3), np.uint8)
    for value, colour in colours.items():
        out[mask == value] = colour
    return Image.fromarray(out)


def test_every_mask_form_reads_as_the_same_object(tmp_path):
    forms = {
        "zero_one": Image.fromarray(OBJECT),
        "zero_255": Image.fromarray(OBJECT * 255),
        "palette": palette(OBJECT * 2),
        "rgb": rgb(OBJECT, {1: (255, 0, 0)}),
        "grey_as_rgb": rgb(OBJECT, {1: (255, 255, 255)}),
        "bilevel": Image.fromarray(OBJECT * 255).convert("1"),
        "rgba": Image.fromarray(
            np.dstack([np.asarray(rgb(OBJECT, {1: (0, 0, 255)}))] + [np.full((48, 64), 255, np.uint8)])
        ),
        "grey_alpha_opaque": Image.fromarray(np.dstack([OBJECT * 255, np.full((48, 64), 255, np.uint8)])),
        # a cut-out saved as the mask: white even where transparent, the object opaque
        "alpha_cutout": Image.fromarray(np.dstack([np.full((48, 64, 3), 255, np.uint8), OBJECT * 255])),
    }
    for name, mask in forms.items():
        write_pair(tmp_path, name, mask)
    write_pair(tmp_path, "suffixed", Image.fromarray(OBJECT * 255), mask_name="suffixed_mask")
    # an image named NAME_mask pairs with its own NAME_mask mask, not with a NAME
    write_pair(tmp_path, "face_mask", Image.fromarray(OBJECT * 255))
    # a camera's upper-case suffix is a suffix PIL knows
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "images" / "IMG_0001.JPG", "JPEG")
    Image.fromarray(OBJECT * 255).save(tmp_path / "masks" / "IMG_0001.PNG")
    (tmp_path / "images" / "notes.txt").write_text("not an image")  # left out, as hidden files are
    (tmp_path / "images" / "._rgb.png").write_bytes(b"\0\5\26\7")  # macOS's AppleDouble file: hidden
    ds = FolderDataset(tmp_path, "trainval", split_seed=0, val_fraction=0, test_fraction=0)
    assert sorted(ds.names) == sorted([*forms, "suffixed", "face_mask", "IMG_0001"])
    for i, name in enumerate(ds.names):
        assert np.array_equal(ds.load_mask(i), OBJECT), name


def test_a_soft_mask_is_told_to_take_a_threshold_and_an_aliased_one_its_main_colour(tmp_path):
    """An anti-aliased mask's hint named its faintest edge levels ("1", "#010000"): following it kept a
    few dozen pixels of the object."""
    y, x = np.mgrid[:48, :64]
    inside = 15 - np.hypot(y - 24, x - 32)  # a disc of radius 15 px, its edge smoothed over 3 px
    edge = Image.fromarray(np.clip(inside * 85 + 128, 0, 255).astype(np.uint8))  # dozens of grey levels
    write_pair(tmp_path, "soft", edge)
    with pytest.raises(MaskValueError, match=r'look like a soft edge .*: pass mask_values=">127"'):
        FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0).load_mask(0)
    red = tmp_path / "red"
    levels = np.asarray(edge)
    write_pair(red, "soft", Image.fromarray(np.stack([levels, 0 * levels, 0 * levels], -1)))
    with pytest.raises(MaskValueError, match=r'e.g. mask_values="#ff0000"'):
        FolderDataset(red, "trainval", val_fraction=0, test_fraction=0).load_mask(0)


def test_mask_values_choose_the_object(tmp_path):
    labels = OBJECT.copy()
    labels[35:45, 5:15] = 2  # a second class
    write_pair(tmp_path, "grey", Image.fromarray(labels))
    ds = FolderDataset(tmp_path, "trainval", mask_values="2", val_fraction=0, test_fraction=0)
    assert ds.load_mask(0).sum() == 100
    ds = FolderDataset(tmp_path, "trainval", mask_values="1,2", val_fraction=0, test_fraction=0)
    assert ds.load_mask(0).sum() == OBJECT.sum() + 100
    # each choice its own cache: a cache of "2" read back for "1,2" trained the other object
    cached = {}
    for values in ("2", "1,2"):
        chosen = FolderDataset(tmp_path, "trainval", mask_values=values, val_fraction=0, test_fraction=0)
        cached[values] = int((build_cache(chosen, 64, tmp_path / "cache").trimaps[0] == 1).sum())
    assert 0 < cached["2"] < cached["1,2"]
    soft = tmp_path / "soft"
    write_pair(soft, "jpeg_like", Image.fromarray((OBJECT * 250 + 3).astype(np.uint8)))
    assert np.array_equal(
        FolderDataset(soft, "trainval", mask_values=">127", val_fraction=0, test_fraction=0).load_mask(0),
        OBJECT,
    )
    for above in (3, 252):  # ">N" is strictly above N: the background's 3 is not the object at >3
        ds = FolderDataset(soft, "trainval", mask_values=f">{above}", val_fraction=0, test_fraction=0)
        assert np.array_equal(ds.load_mask(0), OBJECT)
    colour = tmp_path / "colour"
    write_pair(colour, "two_colours", rgb(labels, {1: (255, 0, 0), 2: (0, 0, 255)}))
    ds = FolderDataset(colour, "trainval", mask_values="#0000ff", val_fraction=0, test_fraction=0)
    assert ds.load_mask(0).sum() == 100


def test_samples_cache_and_evaluation_work_as_for_the_oxford_set(demo, tmp_path):
    ds = FolderDataset(demo, "train", image_size=64)
    sample = ds[0]
    assert set(sample) == {"image", "mask", "name", "index"}
    assert sample["image"].shape == (3, 64, 64) and sample["mask"].shape == (1, 64, 64)
    assert set(sample["mask"].unique().tolist()) <= {0.0, 1.0}
    cached = FolderDataset(demo, "train", image_size=64).use_cache(tmp_path / "cache", 64)
    for i in range(len(ds)):
        a, b = ds[i], cached[i]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    # Evaluation at each image's own size, with the folder's name where the Oxford set has breeds.
    test = FolderDataset(demo, "test", image_size=64)
    df = evaluate(torch.nn.Conv2d(3, 1, 1), test, device="cpu", progress=False)
    sizes = [test.original_size(i) for i in range(len(test))]
    assert list(zip(df.height, df.width, strict=True)) == sizes
    assert df.dice.between(0, 1).all() and set(df.breed) == {"mine"}
    facts = describe(test)
    assert (facts.border_fraction == 0).all() and facts.fg_fraction.between(0, 1).all()
    viewer = MaskViewer(test)
    assert viewer.render().shape == (*test.original_size(0), 3)


def test_the_seeded_split_is_stated_reproducible_and_disjoint(demo):
    parts = {s: FolderDataset(demo, s).names for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [20, 2, 2]  # 80 / 10 / 10 % of 24
    assert sorted(sum(parts.values(), [])) == sorted(find_pairs(demo))
    assert parts == {s: FolderDataset(demo, s).names for s in parts}  # the same every time
    assert FolderDataset(demo, "trainval").names == sorted(parts["train"] + parts["val"])
    other = seeded_split(sorted(find_pairs(demo)), 0.1, 0.1, seed=1)
    assert other["test"] != parts["test"]
    assert (
        "seeded split (seed 0): train / val / test 80% / 10% / 10%" in FolderDataset(demo, "val").split_source
    )
    with pytest.raises(EmptySplitError, match=r"2 image pair\(s\) are too few for val_fraction=0.4"):
        seeded_split(["a", "b"], 0.4, 0.4)
    small = seeded_split(list("abcd"), 0.1, 0.1)  # 0.4 images each: a fraction above 0 gets one
    assert [len(small[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    assert seeded_split(list("abcd"), 0.1, 0)["test"] == []


def split_folder(demo: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """A folder with the demo's images and masks (linked) and an empty splits/; the demo's names."""
    root = tmp_path / "mine"
    root.mkdir()
    for sub in ("images", "masks"):
        (root / sub).symlink_to(demo / sub)
    (root / "splits").mkdir()
    return root, sorted(find_pairs(demo))


def test_split_files_fix_the_split(demo, tmp_path):
    root, names = split_folder(demo, tmp_path)
    (root / "splits" / "train.txt").write_text("\n".join(names[:20]) + "\n")
    (root / "splits" / "val.txt").write_text("# validation\n" + "\n".join(f"{n}.jpg" for n in names[20:22]))
    ds = FolderDataset(root, "val")
    assert ds.names == names[20:22] and "split files" in ds.split_source
    (root / "splits" / "val.txt").write_bytes("\r".join(names[20:22]).encode())  # classic Mac line ends
    assert FolderDataset(root, "val").names == names[20:22]
    with pytest.raises(
        EmptySplitError, match=r"the test split of .* has no images .* list some in splits/test.txt"
    ):
        FolderDataset(root, "test")
    with pytest.raises(
        EmptySplitError, match=r"has no images \(a seeded split.*; give test_fraction above 0"
    ):
        FolderDataset(demo, "test", test_fraction=0)  # no splits/: the fraction gave it none
    (root / "splits" / "test.txt").write_text(f"{names[0]}\nno_such_photo\n")
    with pytest.raises(FileNotFoundError, match=r"test.txt:2 'no_such_photo'.*fix the names"):
        FolderDataset(root, "train")
    (root / "splits" / "test.txt").write_text(f"\ufeff{names[0]}\r\n")  # Notepad: a byte-order mark, CRLF
    with pytest.raises(
        ValueError, match=rf"in both train.txt and test.txt: {names[0]}; an image must be in one split"
    ):
        FolderDataset(root, "train")


# --- each bad case, with what its message promises -------------------------------------------------------
def test_an_image_without_a_mask_is_named(tmp_path):
    write_pair(tmp_path, "a", Image.fromarray(OBJECT))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "lonely.jpg")
    message = (
        r"1 of 2 images have no mask in .*masks \(looked for NAME.\* and NAME_mask.\*\): lonely.jpg; add"
        r".*or move the lone files out of the folder"
    )
    with pytest.raises(FileNotFoundError, match=message):
        FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0)
    ds = FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0, on_missing="skip")
    assert ds.names == ["a"]


def test_a_mask_without_an_image_is_named(tmp_path):
    write_pair(tmp_path, "a", Image.fromarray(OBJECT))
    Image.fromarray(OBJECT).save(tmp_path / "masks" / "orphan.png")
    with pytest.raises(
        FileNotFoundError, match=r"1 masks have no image in .*images: orphan.png; add the missing"
    ):
        FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0)


def test_two_files_for_one_name_are_named(tmp_path):
    write_pair(tmp_path, "a", Image.fromarray(OBJECT))
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "images" / "a.jpg")
    with pytest.raises(ValueError, match=r"a.jpg and .*a.png are two images for the name 'a'; keep one"):
        find_pairs(tmp_path)


def test_a_mask_with_more_than_two_values_lists_them_and_the_mapping_to_pass(tmp_path):
    labels = OBJECT.copy()
    labels[35:45, 5:15] = 2
    write_pair(tmp_path, "classes", Image.fromarray(labels))
    ds = FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0)
    message = (
        r"classes.png: the mask has 3 values \(0, 1, 2\); a mask needs 0 for the background and one value for "
        r'the object; pass mask_values with the object\'s values, e.g. mask_values="1" or "1,2"'
    )
    with pytest.raises(MaskValueError, match=message):
        ds.load_mask(0)
    with pytest.raises(MaskValueError, match=message):
        ds[0]  # as training reads it


def test_an_oxford_trimap_is_named_and_its_background_never_suggested(tmp_path):
    trimap = np.full(OBJECT.shape, 2, np.uint8)  # background 2, pet 1 with a border 3
    trimap[OBJECT > 0] = 1
    trimap[OBJECT.shape[0] // 2, :] = 3
    write_pair(tmp_path, "trimap", Image.fromarray(trimap))
    ds = FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0)
    with pytest.raises(
        MaskValueError,
        match=r'Oxford-IIIT Pet trimap \(1 pet, 2 background, 3 border\): pass mask_values="1,3"',
    ):
        ds.load_mask(0)
    assert (
        FolderDataset(tmp_path, "trainval", mask_values="1,3", val_fraction=0, test_fraction=0)
        .load_mask(0)
        .sum()
        == (trimap != 2).sum()
    )


def test_masks_that_mask_values_leaves_empty_are_counted(tmp_path):
    for i in range(4):  # two masks in 0/255, two in 0/1: mask_values="255" fits only the first two
        write_pair(tmp_path, f"pet{i}", Image.fromarray(OBJECT * (255 if i < 2 else 1)))
    facts = describe(FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0))
    assert empty_masks(facts) == ""
    with pytest.warns(MaskValueWarning):
        facts = describe(
            FolderDataset(tmp_path, "trainval", mask_values="255", val_fraction=0, test_fraction=0)
        )
    assert empty_masks(facts, "255").startswith(
        '2 of 4 masks hold no object pixel under mask_values="255" (pet2, pet3)'
    )


def test_describe_names_every_mask_that_cannot_be_used_at_once(tmp_path):
    write_pair(tmp_path, "good", Image.fromarray(OBJECT * 255))
    write_pair(tmp_path, "three", Image.fromarray(OBJECT * 2 + (OBJECT[::-1] > 0)))  # values 0 to 3
    write_pair(tmp_path, "trimap", Image.fromarray(OBJECT + 1))  # 1 and 2: which is the object?
    write_pair(tmp_path, "small", Image.fromarray(OBJECT * 255))
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "images" / "small.png")  # another size
    ds = FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0)
    with pytest.raises(MaskValueError) as e:
        describe(ds)
    lines = str(e.value).splitlines()
    assert lines[0] == "3 of the 4 masks cannot be used:" and "give mask_values as the lines say" in lines[-1]
    assert [line.split(": ")[0].rsplit("/", 1)[-1] for line in lines[1:4]] == [
        "small.png",
        "three.png",
        "trimap.png",
    ]
    skipping = FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0, on_corrupt="skip")
    with pytest.raises(MaskValueError, match=r"^2 of the 4 masks"):  # unclear values are never skipped
        describe(skipping)
    # training's cache build (the CLI's train) names them at once too, in one process or several
    for workers, cache in ((1, tmp_path / "c1"), (2, tmp_path / "c2")):
        unclear = r"^2 of the 4 trainval masks cannot be used:\n- .*three\.png: .*\n- .*trimap\.png: "
        with pytest.raises(MaskValueError, match=unclear):
            build_cache(skipping, 32, cache, workers=workers)
        assert not list(cache.iterdir())  # no cache, nor a half-built one


def test_two_values_without_a_background_ask_which_is_the_object(tmp_path):
    write_pair(tmp_path, "trimap_like", Image.fromarray(OBJECT + 1))
    ds = FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0)
    with pytest.raises(
        MaskValueError, match=r'values \(1, 2\); neither is 0, .*pass mask_values="1" or mask_values="2"'
    ):
        ds.load_mask(0)


def test_an_rgb_mask_with_several_colours_lists_them(tmp_path):
    labels = OBJECT.copy()
    labels[35:45, 5:15] = 2
    write_pair(tmp_path, "colours", rgb(labels, {1: (255, 0, 0), 2: (0, 0, 255)}))
    ds = FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0)
    with pytest.raises(
        MaskValueError, match=r'3 colours \(#000000, #0000ff, #ff0000\); .*mask_values="#ff0000"'
    ):  # the object's colour, the most common, first
        ds.load_mask(0)
    ds = FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0, mask_values="255")
    with pytest.raises(MaskValueError, match=r"an RGB mask with colours, but mask_values gives grey values"):
        ds.load_mask(0)


def test_a_mask_of_another_size_gives_both_sizes(tmp_path, demo):
    write_pair(tmp_path, "a", Image.fromarray(OBJECT))
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "images" / "a.png")  # 40x30, mask 64x48
    ds = FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0)
    message = r"a.png: mask size 64x48 differs from its image's 40x30 \(.*a.png\); .*resize the mask"
    with pytest.raises(CorruptSampleError, match=message):
        ds.load_mask(0)
    with pytest.raises(CorruptSampleError, match=message):
        ds[0]
    skipping = FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0, on_corrupt="skip")
    assert "skipped" in skipping[0]


def phone_photo(path: Path, upright: np.ndarray) -> None:
    """`upright` (HxWx3) saved as phones save a portrait photo: the pixels stored a quarter turn off, and
    the EXIF orientation 6 that tells viewers to turn them back."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.joinpath(f"{path.stem}.png").unlink(missing_ok=True)  # write_pair's stand-in image
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])  # phones write JPEGs, which TorchCodec decodes
def test_a_phone_photo_is_read_upright_beside_its_mask(tmp_path, suffix):
    """An image stored sideways with an EXIF orientation is read as viewers (and annotation tools) show
    it beside a mask of that size, and as stored beside a mask drawn on the stored pixels."""
    picture = np.zeros((48, 64, 3), np.uint8)
    picture[OBJECT == 1] = 255  # the object white, where the mask has it
    write_pair(tmp_path, "shown", Image.fromarray(OBJECT))
    phone_photo(tmp_path / "images" / f"shown{suffix}", picture)
    write_pair(tmp_path, "stored", Image.fromarray(np.rot90(OBJECT)))  # ROTATE_90's quarter turn
    phone_photo(tmp_path / "images" / f"stored{suffix}", picture)

    def folder() -> FolderDataset:
        return FolderDataset(tmp_path, "trainval", image_size=32, val_fraction=0, test_fraction=0)

    ds, cached = folder(), folder().use_cache(tmp_path / "cache", 32)
    assert ds.names == ["shown", "stored"]
    assert ds.original_size(0) == (48, 64) and ds.original_size(1) == (64, 48)
    for i in range(2):
        image, mask = ds.load_image(i), ds.load_mask(i)
        assert image.shape[:2] == mask.shape == ds.original_size(i)
        assert np.array_equal(image[..., 0] > 127, mask == 1)  # aligned, pixel for pixel
        a, b = ds[i], cached[i]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    # A mask of neither size: the message gives the image's size both ways.
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "masks" / "shown.png")
    message = r"mask size 40x30 differs from its image's 64x48 .*stored as 48x64 and shown turned to 64x48"
    with pytest.raises(CorruptSampleError, match=message):
        folder().load_mask(0)


def test_a_16_bit_image_keeps_its_range_and_a_float_image_is_named(tmp_path):
    """16-bit grey images (scans, microscopy) keep their top 8 bits: PIL's convert("RGB") clips them at
    255, which made 99.6% of this one white. A float image has no one scale: the error says what to do."""
    deep = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    write_pair(tmp_path, "deep", Image.fromarray(OBJECT))
    Image.fromarray(deep).save(tmp_path / "images" / "deep.png")  # PIL mode I;16
    write_pair(tmp_path, "float", Image.fromarray(OBJECT))
    (tmp_path / "images" / "float.png").unlink()
    Image.fromarray(deep.astype(np.float32) / 65535).save(tmp_path / "images" / "float.tif")  # mode F
    ds = FolderDataset(tmp_path, "trainval", val_fraction=0, test_fraction=0)
    image = ds.load_image(0)
    assert np.array_equal(image, np.repeat((deep >> 8).astype(np.uint8)[..., None], 3, axis=2))
    message = r"float.tif: a floating-point image .* save it as 8- or 16-bit, or pass on_corrupt='skip'"
    with pytest.raises(CorruptSampleError, match=message):
        ds[1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", r"mask_values='abc': cannot read 'abc'; give the object's pixel values"),
        ("#ff00", r"cannot read '#ff00'"),
        (">127,1", r"a threshold \(>N\) goes alone"),
    ],
)
def test_unreadable_mask_values_say_what_they_take(text, message):
    with pytest.raises(ValueError, match=message):
        parse_mask_values(text)
    with pytest.raises(ValueError, match=message):
        TrainConfig(mask_values=text)


def test_a_name_in_val_and_test_is_refused(demo, tmp_path):
    root, names = split_folder(demo, tmp_path)
    for split, part in (("train", names[:20]), ("val", names[20:22]), ("test", names[21:24])):
        (root / "splits" / f"{split}.txt").write_text("\n".join(part) + "\n")
    with pytest.raises(
        ValueError, match=rf"in both val.txt and test.txt: {names[21]}; an image must be in one"
    ):
        FolderDataset(root, "train")


def rename_pair(root: Path, old: str, new: str) -> None:
    """Give the pair `old` (image and mask, whichever suffixes) the name `new`."""
    for path in (*(root / "images").glob(f"{old}.*"), *(root / "masks").glob(f"{old}*")):
        path.rename(path.with_name(new + path.name[len(old) :]))


def test_a_runs_split_files_read_back_as_written(tmp_path):
    """`#hash` was read as a comment (a train image lost, silently) and ` photo_011 ` stripped to a name
    of no pair; names with a form feed or U+2028 were cut in two by splitlines()."""
    root = make_synthetic_folder(tmp_path / "odd", n=24, seed=0)
    odd = ["#hash", " photo_011 ", "  ", "form\x0cfeed", "line\u2028sep", "\ufeffmarked", "# note"]
    for i, name in enumerate(odd):
        rename_pair(root, f"photo_{i:03d}", name)
    seeded = FolderDataset(root, "train").splits
    assert set(odd) <= {n for names in seeded.values() for n in names}
    write_splits(seeded, root / "splits")  # as a run writes <run>/splits, copied into the folder
    assert FolderDataset(root, "train").splits == seeded
    for split in ("train", "val", "test"):  # typed by hand: a comment, blank lines, stray spaces, CRLF
        path = root / "splits" / f"{split}.txt"
        typed = [n if n in odd else f"  {n}\t" for n in path.read_text(encoding="utf-8").split("\n")]
        path.write_bytes(("# the split\n\n" + "\n".join(typed)).replace("\n", "\r\n").encode())
    assert FolderDataset(root, "train").splits == seeded


def test_a_name_with_a_line_break_is_not_written_as_two(tmp_path):
    with pytest.raises(ValueError, match=r"1 name\(s\) hold a line break.*'two\\nlines'; rename those"):
        write_splits({"train": ["cat", "two\nlines"]}, tmp_path / "splits")
    with pytest.raises(ValueError, match=r"1 name\(s\) hold a line break.*'two\\rlines'; rename those"):
        write_splits({"val": ["two\rlines"]}, tmp_path / "splits")  # a lone CR reads back as a line end
    assert not (tmp_path / "splits").exists()


def test_a_runs_recorded_split_keeps_only_the_images_the_folder_has(tmp_path):
    """The split a run recorded, read in a folder that lost one of its images: named (raise), left out
    (skip), or, in another folder (not strict), that folder's own split instead (None)."""
    from seglib.data.splits import recorded_split

    pairs = {n: (tmp_path / f"{n}.jpg", tmp_path / f"{n}.png") for n in ("a", "b", "c")}
    recorded = {"train": ["a", "gone"], "val": ["b"], "test": ["c"]}
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) of the run's recorded split .*: gone; put"):
        recorded_split(tmp_path, pairs, recorded, "raise")
    splits, source = recorded_split(tmp_path, pairs, recorded, "skip")
    assert splits == {"train": ["a"], "val": ["b"], "test": ["c"]} and "the split its run recorded" in source
    with pytest.warns(
        UserWarning, match=r"lacks images of the run's recorded split: read with its own split"
    ):
        assert recorded_split(tmp_path, pairs, recorded, "raise", strict=False) is None
    assert recorded_split(tmp_path, pairs, {"train": ["a"]}, "raise", strict=False)[0]["train"] == ["a"]


def test_the_seeded_split_depends_on_the_names_not_their_order():
    names = [f"p{i:02d}" for i in range(30)]
    assert seeded_split(names[::-1], seed=3) == seeded_split(names, seed=3)


def test_fractions_that_leave_nothing_to_train_are_refused():
    with pytest.raises(ValueError, match=r"val_fraction=0.5 and test_fraction=0.5 must each be in"):
        TrainConfig(val_fraction=0.5, test_fraction=0.5)  # adding up to 1 exactly: none would train
    with pytest.raises(
        ValueError, match=r"val_fraction=0.6 and test_fraction=0.5 must each be in \[0, 1\) and add up"
    ):
        TrainConfig(val_fraction=0.6, test_fraction=0.5)


def test_a_folder_without_images_and_masks_says_what_it_needs(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"has no images/ and masks/ folders; a folder data set holds images/"
    ):
        resolve_data_root(tmp_path, "folder")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FolderDataset(tmp_path / "nowhere")


def test_auto_and_the_run_config_find_the_folder(demo, tmp_path):
    assert resolve_data_root(demo, "auto", tmp_path / "synthetic") == (demo, "folder")
    cfg = TrainConfig(dataset="auto", data_root=str(demo), mask_values="", split_seed=0)
    assert split_dataset(cfg, "test", image_size=32).names == open_split(demo, "folder", "test").names
    other = TrainConfig(dataset="folder", data_root=str(demo), split_seed=3)
    assert split_dataset(other, "test").names != split_dataset(cfg, "test").names


def test_the_demo_folder_holds_every_mask_form(demo):
    masks = sorted((demo / "masks").iterdir())
    modes = {Image.open(m).mode for m in masks}
    assert modes == {"L", "P", "RGB"} and any(m.stem.endswith("_mask") for m in masks)
    assert {p.suffix for p in (demo / "images").iterdir()} == {".jpg", ".png"}
    assert re.fullmatch(r"photo_\d{3}", masks[0].stem)


def test_a_name_that_is_not_utf8_trains_and_is_written_as_its_bytes(tiny_config, tmp_path):
    """A pair named in Latin-1 (caf\\xe9.jpg on an older disk) stopped training at the cache ("surrogates not
    allowed"), and without the cache at the run's split files, leaving a run folder of config.json only."""
    import os
    import shutil

    from seglib.engine import fit

    root = make_synthetic_folder(tmp_path / "latin", n=12, seed=0)
    image = sorted((root / "images").iterdir())[0]
    mask = next(p for p in (root / "masks").iterdir() if p.stem.removesuffix("_mask") == image.stem)
    name = os.fsdecode(b"caf\xe9")
    image.rename(image.with_name(name + image.suffix))
    mask.rename(mask.with_name(name + mask.name[len(image.stem) :]))
    for cache in (True, False):
        cfg = tiny_config(dataset="folder", data_root=str(root), cache=cache, epochs=1, val_fraction=0.25)
        run = fit(cfg)
        listed = b"".join(
            (run.run_dir / "splits" / f"{s}.txt").read_bytes() for s in ("train", "val", "test")
        )
        assert b"caf\xe9\n" in listed  # as the disk names it
    shutil.copytree(
        run.run_dir / "splits", root / "splits"
    )  # the run's split, fixed in the folder: read back
    assert name in FolderDataset(root, "trainval").names + FolderDataset(root, "test").names


def grow(root: Path, n: int = 8) -> None:
    """`n` more pairs in the folder (another seed's, named extra_*): a user adds photos after training."""
    more = make_synthetic_folder(root.parent / f"{root.name}-more", n=n, seed=1)
    for sub in ("images", "masks"):
        for p in (more / sub).iterdir():
            p.rename(root / sub / p.name.replace("photo_", "extra_"))


def test_a_run_is_scored_and_resumed_on_its_own_split_after_the_folder_grows(
    tiny_config, tmp_path, loss_at_step
):
    """The folder's seeded split changes with every pair added: evaluate scored a training image as a test
    image, and a resume trained on another training set, both silently."""
    import pandas as pd

    from seglib.engine import TrainingInterrupted, checkpoint_split, fit

    a, b = (make_synthetic_folder(tmp_path / name, n=12, seed=0) for name in ("a", "b"))
    split = {"dataset": "folder", "val_fraction": 0.25, "test_fraction": 0.25, "epochs": 3}
    whole = fit(tiny_config(data_root=str(a), output_dir=tmp_path / "runs-a", **split))
    with pytest.raises(TrainingInterrupted):
        fit(
            tiny_config(data_root=str(b), output_dir=tmp_path / "runs-b", **split),
            loss_fn=loss_at_step("ctrl_c", 3),
        )
    grow(a), grow(b)
    held_out = (whole.run_dir / "splits" / "test.txt").read_text().split()
    assert FolderDataset(a, "test", val_fraction=0.25, test_fraction=0.25).names != sorted(
        held_out
    )  # the folder's
    assert checkpoint_split(whole.best_checkpoint, "test").names == sorted(held_out)
    validated = sorted((whole.run_dir / "splits" / "val.txt").read_text().split())
    assert checkpoint_split(whole.best_checkpoint, "val", data_root=a).names == validated  # the same folder
    resumed = fit(tiny_config(data_root=str(b), output_dir=tmp_path / "runs-b", **split), resume=True)
    ha, hb = (pd.read_csv(r.run_dir / "history.csv").drop(columns="seconds") for r in (whole, resumed))
    pd.testing.assert_frame_equal(ha, hb, check_exact=True)
    for p in [*(b / "images").glob(f"{held_out[0]}.*"), *(b / "masks").glob(f"{held_out[0]}*")]:
        p.unlink()  # a test image of the run deleted
    with pytest.raises(
        FileNotFoundError, match=r"1 image\(s\) of the run's recorded split are not in images/ and masks/"
    ):
        checkpoint_split(resumed.best_checkpoint, "test")
    # the data copied or moved (--data_path at the copy) is read with the run's split, as it holds all of it
    import shutil

    copy = shutil.copytree(a, tmp_path / "copied")
    assert checkpoint_split(whole.best_checkpoint, "test", data_root=copy).names == sorted(held_out)
    # other data, without every image of the run's split: its own split, said
    with pytest.warns(
        UserWarning, match=r"lacks images of the run's recorded split: read with its own split"
    ):
        other = checkpoint_split(whole.best_checkpoint, "test", data_root=b)
    assert other.names == FolderDataset(b, "test", val_fraction=0.25, test_fraction=0.25).names


def test_images_in_subfolders_are_said_not_searched(tmp_path):
    """images/cats/*.jpg with masks/cats/*.png: the pairs were dropped without a word, and with none at the
    top the error was "0 image pair(s) are too few", naming no folder."""
    sub = make_synthetic_folder(tmp_path / "sub", n=12, seed=0)
    for name in ("images", "masks"):
        (sub / name / "cats").mkdir()
        for p in [p for p in (sub / name).iterdir() if p.is_file()]:
            p.rename(sub / name / "cats" / p.name)
    with pytest.raises(
        FileNotFoundError, match=r"subfolders are not searched: images/ has 1 \(cats\); masks/ has 1"
    ):
        FolderDataset(sub, "train")
    make_synthetic_folder(tmp_path / "top", n=8, seed=1)
    for name in ("images", "masks"):
        for p in (tmp_path / "top" / name).iterdir():
            p.rename(sub / name / p.name)
    with pytest.warns(
        UserWarning, match=r"images/ has 1 \(cats\).*put their files directly in images/ and masks/"
    ):
        assert len(FolderDataset(sub, "trainval", val_fraction=0.25, test_fraction=0)) == 8


def test_a_name_listed_twice_in_one_split_file_is_refused(demo, tmp_path):
    """A name twice in test.txt was scored twice (per_image.csv listed it twice); twice in train.txt, trained
    twice as often."""
    root, names = split_folder(demo, tmp_path)
    for split, part in (
        ("train", names[:20]),
        ("val", names[20:22]),
        ("test", [names[22], names[23], names[22]]),
    ):
        (root / "splits" / f"{split}.txt").write_text("\n".join(part) + "\n")
    with pytest.raises(
        ValueError, match=rf"1 line\(s\) name an image already listed above them: test.txt:3 '{names[22]}'"
    ):
        FolderDataset(root, "test")


def test_a_utf16_split_file_is_named_as_such(demo, tmp_path):
    """PowerShell's `>` writes UTF-16: every name read garbled, and the advice was to fix the names."""
    root, names = split_folder(demo, tmp_path)
    for encoding in ("utf-16", "utf-16-le"):  # with its byte-order mark, and without one
        (root / "splits" / "train.txt").write_text("\n".join(names[:20]) + "\n", encoding=encoding)
        with pytest.raises(ValueError, match=r"train\.txt is UTF-16 text .*, not UTF-8; save it as UTF-8"):
            FolderDataset(root, "train")


def test_a_palette_mask_reads_by_its_colours_where_its_indices_would_mislead(tmp_path):
    """A palette mask given the object's colour was told to give values instead ("255", in no such file);
    one whose index 0 is the white object and index 1 the black background read inverted."""
    im = palette(OBJECT)  # index 0 black, 1 the object in (200, 30, 30)
    write_pair(tmp_path / "red", "a", im)
    ds = FolderDataset(tmp_path / "red", "trainval", mask_values="#c81e1e", val_fraction=0, test_fraction=0)
    assert np.array_equal(ds.load_mask(0), OBJECT)
    inverted = Image.frombytes("P", OBJECT.shape[::-1], (1 - OBJECT).astype(np.uint8).tobytes())
    inverted.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)  # the object white at index 0, black at 1
    write_pair(tmp_path / "white", "a", inverted)
    ds = FolderDataset(tmp_path / "white", "trainval", val_fraction=0, test_fraction=0)
    assert np.array_equal(ds.load_mask(0), OBJECT)
    im.putpalette([255, 255, 255, 200, 30, 30] + [0] * 762)  # no black: index 0 (white) the background
    write_pair(tmp_path / "plain", "a", im)
    ds = FolderDataset(tmp_path / "plain", "trainval", val_fraction=0, test_fraction=0)
    assert np.array_equal(ds.load_mask(0), OBJECT)

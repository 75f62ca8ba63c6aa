import os
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import run_with_file_limit
from PIL import Image

from seglib.data import (
    BREEDS,
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    EmptySplitError,
    EpochSampler,
    OxfordPetDataset,
    eval_transform,
    make_synthetic_folder,
    make_synthetic_pets,
    read_list,
    resolve_data_root,
    seed_transform,
    select_split,
    synthetic_set_root,
    train_transform,
    trimap_to_mask,
)
from seglib.data.synthetic import publish_folder
from seglib.data.trimaps import check_trimap
from seglib.leftovers import host


# --- list files and the split rule -------------------------------------------------------------
def test_split_rule_on_the_full_lists(full_lists_root):
    trainval = read_list(full_lists_root / "trainval.txt")
    test = read_list(full_lists_root / "test.txt")
    assert (len(select_split(trainval, "train")), len(select_split(trainval, "val"))) == (3312, 368)
    assert len(select_split(test, "test")) == 3669
    assert {e.breed for e in trainval} == set(BREEDS)
    assert select_split(trainval, "val") == trainval[::10]  # i % 10 == 0
    assert select_split(trainval, "train") == [e for i, e in enumerate(trainval) if i % 10]


def test_list_entries_know_breed_and_species(tmp_path):
    (tmp_path / "l.txt").write_text("#comment\nAbyssinian_100 1 1 1\nyorkshire_terrier_9 37 2 25\n")
    a, y = read_list(tmp_path / "l.txt")
    assert (a.breed, a.species, y.breed, y.species) == ("Abyssinian", "cat", "yorkshire_terrier", "dog")


def test_malformed_list_line_names_file_and_line(tmp_path):
    (tmp_path / "l.txt").write_text("Abyssinian_100 1 1 1\nAbyssinian_101 one 1 1\n")
    with pytest.raises(ValueError, match=r"l\.txt:2"):
        read_list(tmp_path / "l.txt")
    with pytest.raises(ValueError, match="unknown split"):
        select_split([], "validation")


def test_a_list_file_with_a_byte_order_mark_or_missing_is_read_or_named(synthetic_root, tmp_path):
    """Saved by Windows Notepad, trainval.txt began with a byte-order mark, read into the first name ("no
    image or trimap file (first: \\ufeffAbyssinian_100); download the data again"); a missing test.txt gave
    a bare "[Errno 2] No such file or directory"."""
    root = shutil.copytree(synthetic_root, tmp_path / "data")
    lists = root / "annotations"
    (lists / "trainval.txt").write_text("\ufeff" + (lists / "trainval.txt").read_text())
    assert OxfordPetDataset(root, "val").names == OxfordPetDataset(synthetic_root, "val").names
    (lists / "test.txt").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"test\.txt is missing: the Oxford-IIIT Pet's annotations/ holds"
    ):
        OxfordPetDataset(root, "test")
    with pytest.raises(ValueError, match=r"unknown split 'validation'; choose one of \['train', 'val'"):
        OxfordPetDataset(root, "validation")


# --- trimaps --------------------------------------------------------------------------------------
def test_trimap_rules():
    tri = np.array([[1, 2, 3]], np.uint8)
    assert trimap_to_mask(tri).tolist() == [[1, 0, 1]]
    assert trimap_to_mask(tri, border="ignore").tolist() == [[1, 0, IGNORE_INDEX]]
    with pytest.raises(ValueError, match="border"):
        trimap_to_mask(tri, border="background")
    with pytest.raises(ValueError, match=r"x\.png.*\[0, 7\]"):
        check_trimap(np.array([[0, 1, 7]], np.uint8), "x.png")
    check_trimap(np.array([[1, 2], [3, 3]], np.uint8))  # valid: no error
    for bad, found in (([[1, 4]], "[4]"), ([[0, 3]], "[0]"), ([[1.5, 2.0]], "[1.5]")):
        with pytest.raises(ValueError, match=re.escape(found)):
            check_trimap(np.array(bad, np.float32 if isinstance(bad[0][0], float) else np.int32), "y.png")


# --- the synthetic set ----------------------------------------------------------------------------
def test_synthetic_set_has_the_official_layout(synthetic_root):
    ann = synthetic_root / "annotations"
    trainval, test = read_list(ann / "trainval.txt"), read_list(ann / "test.txt")
    assert (len(trainval), len(test)) == (200, 20)
    names = [e.name for e in trainval + test]
    assert len(set(names)) == len(names)
    for e in trainval[:20] + test:
        image, trimap = (
            Image.open(synthetic_root / "images" / f"{e.name}.jpg"),
            Image.open(ann / "trimaps" / f"{e.name}.png"),
        )
        assert image.format == "JPEG" and image.mode == "RGB" and trimap.mode == "L"
        assert image.size == trimap.size
        tri = np.asarray(trimap)
        assert set(np.unique(tri)) == {1, 2, 3}
        assert e.breed == e.name.rsplit("_", 1)[0] and e.species == ("cat" if e.breed[0].isupper() else "dog")
    sizes = {Image.open(synthetic_root / "images" / f"{e.name}.jpg").size for e in trainval}
    widths, aspects = [w for w, _ in sizes], [w / h for w, h in sizes]
    assert min(widths) < 300 < 500 < max(widths)  # varied sizes
    assert min(aspects) < 0.9 and max(aspects) > 1.2  # portrait and landscape


def test_synthetic_border_band_is_thin(synthetic_root):
    tri = np.asarray(Image.open(next((synthetic_root / "annotations" / "trimaps").glob("*.png"))))
    pet, border = (tri == 1).sum(), (tri == 3).sum()
    outline = (
        np.abs(np.diff((tri != 2).astype(int), axis=1)).sum()
        + np.abs(np.diff((tri != 2).astype(int), axis=0)).sum()
    )
    assert 0 < border <= 3.5 * outline and pet > 10 * border


def test_synthetic_colours_overlap(synthetic_root):
    """Pet and background colours overlap: colour alone does not separate them."""
    ds = OxfordPetDataset(synthetic_root, "trainval", limit=40)
    pet, bg = [], []
    for i in range(len(ds)):
        image, mask = ds.load_image(i), ds.load_mask(i)
        pet.append(image[mask == 1].mean(0))
        bg.append(image[mask == 0].mean(0))
    pet, bg = np.array(pet), np.array(bg)
    # the spread of pet colours across images covers the background colours' means
    assert np.all(np.abs(pet.mean(0) - bg.mean(0)) < pet.std(0))


def test_synthetic_is_deterministic_and_atomic(tmp_path, monkeypatch):
    a = make_synthetic_pets(tmp_path / "a", 6, 2, seed=3)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # one rendering thread instead of two or more
    b = make_synthetic_pets(tmp_path / "b", 6, 2, seed=3)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 8 + 8 + 3  # images, trimaps, lists
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)  # whatever the threads
    assert not list(tmp_path.glob(".*partial*"))
    with pytest.raises(FileExistsError, match="not empty"):
        make_synthetic_pets(a, 2, 1)


def test_two_makers_of_one_set_at_once_each_finish_it_whole(tmp_path, pids):
    """Two processes making the demo folder at once: each removed the other's half-made folder, and
    one crashed or left a folder with images missing."""
    live, ended = pids
    theirs = tmp_path / f".folder.partial-{host()}-{live}"  # another maker's, half-way
    (theirs / "images").mkdir(parents=True)
    killed = tmp_path / f".folder.partial-{host()}-{ended}"  # a maker killed half-way
    (killed / "images").mkdir(parents=True)
    root = make_synthetic_folder(tmp_path / "folder", n=8)
    assert len(list((root / "images").iterdir())) == 8 == len(list((root / "masks").iterdir()))
    assert theirs.is_dir() and not killed.exists()  # a live maker's folder is kept
    (theirs / "masks").mkdir()  # it finishes second: the first whole set stands
    assert publish_folder(theirs, root) == root and not theirs.exists()
    assert len(list((root / "images").iterdir())) == 8


def _stopping_at_the_third(draw):
    """`draw`, but its third call raises KeyboardInterrupt, as Jupyter's stop button does."""
    calls = []

    def draw_or_stop(*args):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return draw(*args)

    return draw_or_stop


def test_a_make_stopped_in_a_process_that_lives_on_leaves_no_half_made_set(tmp_path, monkeypatch):
    """Stopped in a notebook's kernel, which lives on: its half-made folder, named for that live process,
    would be kept by every later make of the set."""
    import seglib.data.demo_folder as demo_folder
    import seglib.data.synthetic as synthetic

    monkeypatch.setattr(synthetic, "_image_size", _stopping_at_the_third(synthetic._image_size))
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_pets(tmp_path / "pets", 6, 2)
    monkeypatch.setattr(demo_folder, "synthetic_pet", _stopping_at_the_third(demo_folder.synthetic_pet))
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_folder(tmp_path / "folder", n=6)
    assert list(tmp_path.iterdir()) == []


MAKE_WITHOUT_ROOM = """
import sys
from pathlib import Path
from seglib.data import make_synthetic_folder, make_synthetic_pets, make_fullsize_pets
limit_file_size(2000)
# the folder's 5th image is a PNG: Pillow leaves a JPEG cut short at the limit without an error
for make, sizes in ((make_synthetic_pets, (4, 2)), (make_fullsize_pets, (4, 2)), (make_synthetic_folder, (5,))):
    try:
        make(Path(sys.argv[1]) / make.__name__, *sizes)
    except OSError as e:
        print(e)
"""


@pytest.mark.slow
def test_a_data_set_without_room_is_named_and_nothing_of_it_left(tmp_path):
    """A full disk said only `[Errno 28] No space left on device` and left the half-made folder."""
    p = run_with_file_limit(MAKE_WITHOUT_ROOM, str(tmp_path))
    makers = ("make_synthetic_pets", "make_fullsize_pets", "make_synthetic_folder")
    assert p.stdout.splitlines() == [
        f"[Errno 27] could not make the data set {tmp_path / name} (File too large); free some disk space, "
        "or make it elsewhere"
        for name in makers
    ], p.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []


# --- the dataset ------------------------------------------------------------------------------------
def test_dataset_samples(synthetic_root):
    ds = OxfordPetDataset(synthetic_root, "train", image_size=96)
    assert len(ds) == 180 and len(OxfordPetDataset(synthetic_root, "val")) == 20
    assert len(OxfordPetDataset(synthetic_root, "test")) == 20
    s = ds[3]
    assert s["image"].shape == (3, 96, 96) and s["image"].dtype == torch.float32
    assert s["mask"].shape == (1, 96, 96) and set(s["mask"].unique().tolist()) <= {0.0, 1.0}
    assert s["name"] == ds.names[3] and ds.breeds[3] == s["name"].rsplit("_", 1)[0]
    assert ds.species[3] in ("cat", "dog")
    h, w = ds.original_size(3)
    assert ds.load_mask(3).shape == (h, w) and ds.load_image(3).shape == (h, w, 3)
    full = OxfordPetDataset(synthetic_root, "train", image_size=96, return_full_mask=True)[3]["mask_full"]
    assert full.shape == (h, w) and full.dtype == torch.uint8


def test_dataset_border_ignore(synthetic_root):
    ds = OxfordPetDataset(synthetic_root, "val", image_size=128, border="ignore")
    values = set(ds[0]["mask"].unique().tolist())
    assert values == {0.0, 1.0, float(IGNORE_INDEX)}


def test_torchvision_layout_and_missing_root(synthetic_root, tmp_path):
    (tmp_path / "oxford-iiit-pet").symlink_to(synthetic_root)
    assert len(OxfordPetDataset(tmp_path, "val")) == 20
    with pytest.raises(FileNotFoundError, match=r"does not exist.*make data"):
        OxfordPetDataset(tmp_path / "nowhere", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"has no images/.*download"):
        OxfordPetDataset(tmp_path / "empty", "train")
    (tmp_path / "mk.py").write_text(
        ""
    )  # the demo set's folder given as a file: was "[Errno 20] Not a directory"
    with pytest.raises(NotADirectoryError, match=r"synthetic_root '.*mk\.py' is a file: .*give a folder"):
        resolve_data_root(tmp_path / "empty", "synthetic", tmp_path / "mk.py")


def test_images_open_whatever_their_real_format(synthetic_root, tmp_path):
    root = shutil.copytree(synthetic_root, tmp_path / "copy")
    ds = OxfordPetDataset(root, "val")
    originals = [ds.load_image(i) for i in range(4)]
    paths = [ds.image_path(n) for n in ds.names[:4]]
    Image.fromarray(originals[0]).save(paths[0], format="PNG")  # PNG named .jpg
    Image.fromarray(originals[1]).convert("P").save(paths[1], format="GIF")  # GIF named .jpg
    Image.fromarray(originals[2]).convert("RGBA").save(paths[2], format="PNG")
    Image.fromarray(originals[3]).convert("P").save(paths[3], format="PNG")
    (root / "images" / "._Abyssinian_1.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # junk, unlisted
    for i in range(4):
        image = ds.load_image(i)
        assert image.shape == originals[i].shape and image.dtype == np.uint8
        assert ds[i]["image"].shape == (3, 256, 256)
    assert np.array_equal(ds.load_image(0), originals[0])


def test_listed_files_missing(synthetic_root, tmp_path):
    root = shutil.copytree(synthetic_root, tmp_path / "copy")
    names = OxfordPetDataset(root, "val").names
    for n in names[:3]:
        (root / "images" / f"{n}.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=rf"3 of 20 val entries.*{names[0]}.*on_missing='skip'"):
        OxfordPetDataset(root, "val")
    assert len(OxfordPetDataset(root, "val", on_missing="skip")) == 17


def test_an_empty_split_is_an_error_naming_the_list_file_and_the_split(synthetic_root, tmp_path):
    root = shutil.copytree(synthetic_root, tmp_path / "copy")
    trainval = root / "annotations" / "trainval.txt"
    lines = trainval.read_text().splitlines()
    trainval.write_text("")
    with pytest.raises(EmptySplitError, match=rf"the train split has no images: {trainval} lists 0 image"):
        OxfordPetDataset(root, "train")
    trainval.write_text(lines[0] + "\n")  # line 0 is validation: nothing left for training
    with pytest.raises(EmptySplitError, match=r"lists 1 image\(s\), 0 of them in train .*make data"):
        OxfordPetDataset(root, "train")
    val = OxfordPetDataset(root, "val")
    (root / "images" / f"{val.names[0]}.jpg").unlink()
    with pytest.raises(EmptySplitError, match=r"the val split .* none of those 1 has its image and trimap"):
        OxfordPetDataset(root, "val", on_missing="skip")
    (root / "annotations" / "test.txt").write_text("# comments only\n")
    with pytest.raises(EmptySplitError, match=r"the test split has no images: .*test\.txt lists 0"):
        OxfordPetDataset(root, "test")


def test_trimap_image_size_mismatch_is_named(synthetic_root, tmp_path):
    root = shutil.copytree(synthetic_root, tmp_path / "copy")
    ds = OxfordPetDataset(root, "val")
    Image.fromarray(np.full((10, 10), 2, np.uint8)).save(ds.trimap_path(ds.names[0]))
    with pytest.raises(ValueError, match=rf"{ds.names[0]}\.png: trimap size"):
        ds[0]


# --- transforms ---------------------------------------------------------------------------------------
def _unnormalise(t: torch.Tensor) -> np.ndarray:
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return ((t * std + mean).clamp(0, 1) * 255).numpy().transpose(1, 2, 0)


@pytest.mark.parametrize("scale_jitter", [0.0, 0.25])
def test_train_transform_keeps_image_and_mask_aligned(scale_jitter):
    mask = np.zeros((300, 400), np.uint8)
    mask[60:220, 80:260] = 1
    mask[100:140, 300:380] = 1
    image = np.repeat(mask[..., None] * 255, 3, axis=2).astype(np.uint8)
    tf = train_transform(128, scale_jitter=scale_jitter)
    changed, sizes = 0, set()
    for seed in range(30):
        seed_transform(tf, seed)
        out = tf(image=image, mask=mask)
        m = np.asarray(out["mask"])
        assert m.shape == (128, 128) and set(np.unique(m)) <= {0, 1}
        bright = _unnormalise(out["image"]).mean(2) > 127
        assert (bright == (m == 1)).mean() > 0.97, seed
        changed += not np.array_equal(m, np.asarray(eval_transform(128)(image=image, mask=mask)["mask"]))
        sizes.add(round(float(m.mean()), 2))
    assert changed >= 10  # flips and rotations happen
    # Flips and small rotations keep the pet's area; the zoom changes it.
    assert (len(sizes) >= 8) == (scale_jitter > 0), sorted(sizes)


def test_seeded_transform_is_reproducible_and_uncorrelated():
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    tf = train_transform(64)
    seed_transform(tf, 7)
    a = tf(image=image)["image"]
    seed_transform(tf, 7)
    assert torch.equal(a, tf(image=image)["image"])
    # Albumentations' own seeding gives every child the same seed, which couples the coin flips of
    # HorizontalFlip (p 0.5) and Rotate (p 0.3). Ours must show them independent.
    mask = np.zeros((64, 64), np.uint8)
    mask[8:40, 4:24] = 1
    plain = np.asarray(eval_transform(64)(image=image, mask=mask)["mask"])
    counts = {"flip": 0, "rotate": 0, "rotate_only": 0}
    n = 300
    for seed in range(n):
        seed_transform(tf, seed)
        m = np.asarray(tf(image=image, mask=mask)["mask"])
        flipped = np.array_equal(m, plain[:, ::-1])
        rotated = not flipped and not np.array_equal(m, plain)
        if rotated:  # tell a flip under the rotation from none by which half holds the shape
            flipped = m[:, 32:].sum() > m[:, :32].sum()
        counts["flip"] += flipped
        counts["rotate"] += rotated
        counts["rotate_only"] += rotated and not flipped
    assert 0.4 < counts["flip"] / n < 0.6 and 0.2 < counts["rotate"] / n < 0.4
    assert 0.08 < counts["rotate_only"] / n < 0.22  # 0.3 * 0.5 if independent


def test_epoch_sampler():
    s = EpochSampler(50, shuffle=True, seed=1)
    s.set_epoch(1)
    a = list(s)
    s.set_epoch(1)
    assert a == list(s)
    s.set_epoch(2)
    b = list(s)
    assert sorted(i for i, _ in a) == list(range(50)) and [i for i, _ in a] != [i for i, _ in b]
    assert len({seed for _, seed in a}) == 50
    # each image draws a new augmentation every epoch (not the same flip and rotation all run long)
    assert sum(dict(a)[i] != dict(b)[i] for i in range(50)) == 50
    assert [i for i, _ in EpochSampler(5, shuffle=False)] == [0, 1, 2, 3, 4]
    # seed 1's second epoch is not seed 2's first: the seeds of a study are independent runs
    s2 = EpochSampler(50, shuffle=True, seed=2)
    s2.set_epoch(1)
    c = list(s2)
    assert [i for i, _ in b] != [i for i, _ in c] and {seed for _, seed in b}.isdisjoint(
        seed for _, seed in c
    )


def test_resolve_data_root(synthetic_root, tmp_path):
    assert resolve_data_root(synthetic_root, "auto") == (synthetic_root, "oxford-pet")
    root, kind = resolve_data_root(tmp_path / "none", "auto", synthetic_root=synthetic_root)
    assert (root, kind) == (synthetic_root, "synthetic")
    with pytest.raises(FileNotFoundError, match="make data"):
        resolve_data_root(tmp_path / "none", "oxford-pet")
    with pytest.raises(ValueError, match="unknown dataset 'pets'"):
        resolve_data_root(tmp_path, "pets")


def test_synthetic_reads_the_set_at_data_root(synthetic_root, tmp_path):
    """`train --dataset synthetic --data_path syn` trained on the demo set at synthetic_root (generating
    it) while its config named syn; the notebooks read syn."""
    mine = make_synthetic_pets(tmp_path / "syn", n_trainval=4, n_test=2, seed=3)
    assert resolve_data_root(mine, "synthetic", synthetic_root=synthetic_root) == (mine, "synthetic")
    assert synthetic_set_root(mine, "synthetic") == mine
    # no set there, or the real data's folder: the demo set, as before
    assert resolve_data_root(tmp_path / "none", "synthetic", synthetic_root) == (synthetic_root, "synthetic")
    real = make_synthetic_pets(tmp_path / "data" / "oxford-iiit-pet", n_trainval=4, n_test=2)
    assert resolve_data_root(real, "synthetic", synthetic_root) == (synthetic_root, "synthetic")
    assert synthetic_set_root(real, "synthetic") == tmp_path / "data" / "synthetic-pets"
    assert resolve_data_root(mine, "auto", synthetic_root) == (mine, "oxford-pet")  # "auto": unchanged


# --- the real sample ----------------------------------------------------------------------------------
@pytest.mark.sample
def test_real_sample(sample_root):
    train, val = OxfordPetDataset(sample_root, "train"), OxfordPetDataset(sample_root, "val")
    trainval, test = OxfordPetDataset(sample_root, "trainval"), OxfordPetDataset(sample_root, "test")
    assert (len(trainval), len(test), len(train), len(val)) == (300, 100, 270, 30)
    assert set(trainval.breeds) == {"Abyssinian", "american_bulldog", "Bengal"}
    for ds in (trainval, test):
        for i in range(len(ds)):
            image, mask = ds.load_image(i), ds.load_mask(i)
            assert image.ndim == 3 and image.shape[2] == 3 and image.shape[:2] == mask.shape, ds.names[i]
            assert set(np.unique(mask)) <= {0, 1}
    s = test[0]
    assert s["image"].shape == (3, 256, 256) and s["mask"].shape == (1, 256, 256)
    # Abyssinian_34.jpg is a GIF in the release, and unlisted: it is not loaded, yet it opens
    from seglib.data import open_rgb

    assert open_rgb(trainval.root / "images" / "Abyssinian_34.jpg").mode == "RGB"


def _centroid(a: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(a.shape)
    return float((ys * a).sum() / a.sum()), float((xs * a).sum() / a.sum())


@pytest.mark.parametrize("size", [32, 48, 96])
def test_a_resized_mask_stays_centred_on_its_image(size):
    # Albumentations' default mask resize (cv2 INTER_NEAREST) takes the source pixel at floor(j x scale):
    # masks sat about half a pixel down and right of their images, costing the labels 0.45-1.1 Dice points.
    # One box's edges quantise either way; over 20 boxes the offset averages out unless it is biased.
    from seglib.data.transforms import eval_transform, resize

    rng, offsets = np.random.default_rng(size), []
    for _ in range(20):
        image = np.zeros((150, 110, 3), np.uint8)
        top, left = rng.integers(5, 60), rng.integers(5, 40)
        image[top : top + rng.integers(30, 80), left : left + rng.integers(30, 60)] = 255
        mask = (image[..., 0] > 0).astype(np.uint8)
        out = resize(size)(image=image, mask=mask)
        (yi, xi), (ym, xm) = (
            _centroid(out["image"][..., 0].astype(float)),
            _centroid(out["mask"].astype(float)),
        )
        offsets.append((ym - yi, xm - xi))
        assert set(np.unique(out["mask"])) == {0, 1}
        again = eval_transform(size)(image=image, mask=mask)["mask"]  # the pipelines use it
        assert np.array_equal(np.asarray(again), out["mask"])
    dy, dx = np.mean(offsets, axis=0)
    assert abs(dy) < 0.1 and abs(dx) < 0.1, (dy, dx)


def test_training_augmentation_is_the_designs():
    """The original's list, in order, with its settings: Resize, HorizontalFlip 0.5, Rotate +-15 deg p 0.3
    (corners brought in take `mask_fill`), ColorJitter p 0.5, ImageNet Normalize in RGB order; the zoom
    (`scale_jitter`) goes both ways, in and out, left and right."""
    from seglib.data.transforms import train_transform

    steps = train_transform(64, mask_fill=255, scale_jitter=0.2).transforms
    kinds = [type(t).__name__ for t in steps]
    assert kinds == ["Resize", "HorizontalFlip", "Affine", "Rotate", "ColorJitter", "Normalize", "ToTensorV2"]
    flip, zoom, rotate, jitter, normalize = steps[1:6]
    assert flip.p == 0.5 and (rotate.p, rotate.limit, rotate.fill_mask) == (0.3, (-15, 15), 255)
    assert jitter.p == 0.5
    assert normalize.mean == (0.485, 0.456, 0.406) and normalize.std == (0.229, 0.224, 0.225)
    assert zoom.p == 0.5 and zoom.fill_mask == 255
    assert zoom.scale == {"x": (0.8, 1.2), "y": (0.8, 1.2)}
    assert zoom.translate_percent == {"x": (-0.1, 0.1), "y": (-0.1, 0.1)}
    assert "Affine" not in [type(t).__name__ for t in train_transform(64).transforms]  # off by default


def test_describe_gives_each_images_shape_and_shares(synthetic_root):
    """Notebook 01's facts: aspect is width / height; the pet's share counts the border band (trimap 1 and
    3, as the original's masks do), the border's share the band alone."""
    from seglib.data import describe

    ds = OxfordPetDataset(synthetic_root, "test", limit=3)
    facts = describe(ds)
    for i, row in facts.iterrows():
        trimap = ds.load_trimap(i)
        h, w = trimap.shape
        assert (row.width, row.height) == (w, h) and row.aspect == pytest.approx(w / h)
        assert row.fg_fraction == pytest.approx(np.isin(trimap, (1, 3)).mean())
        assert row.border_fraction == pytest.approx((trimap == 3).mean()) and row.border_fraction > 0

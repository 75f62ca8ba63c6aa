"""The decode-once cache: bit-identical samples, rebuilt when a source changes, unreadable files kept out."""

import os
import pickle
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import run_with_file_limit
from torch.utils.data import DataLoader

from seglib.data import OxfordPetDataset, train_transform
from seglib.data.cache import build_cache


@pytest.mark.parametrize("scale_jitter", [0.0, 0.25])
def test_cached_samples_equal_uncached(synthetic_root, tmp_path, scale_jitter):
    tf = train_transform(64, mask_fill=255, scale_jitter=scale_jitter)
    plain = OxfordPetDataset(synthetic_root, "val", tf, border="ignore")
    cached = OxfordPetDataset(synthetic_root, "val", tf, border="ignore").use_cache(tmp_path, 64)
    for i in range(len(plain)):
        a, b = plain[(i, 1000 + i)], cached[(i, 1000 + i)]  # same per-sample seed
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"]), plain.names[i]
    for border in ("pet", "ignore"):  # the full-resolution truth evaluate scores against, border rule kept
        kw = {"image_size": 64, "return_full_mask": True, "border": border}
        plain = OxfordPetDataset(synthetic_root, "val", **kw)
        full = OxfordPetDataset(synthetic_root, "val", **kw).use_cache(tmp_path, 64)
        assert torch.equal(full[0]["mask_full"], plain[0]["mask_full"]), border
        assert (255 in full[0]["mask_full"]) == (border == "ignore")


@pytest.mark.slow
def test_a_cached_set_goes_to_spawned_workers_by_its_folder(synthetic_root, tmp_path):
    """Under spawn (macOS, Windows) every loader worker got a copy of the whole cache, pickled."""
    ds = OxfordPetDataset(synthetic_root, "val", image_size=64).use_cache(tmp_path, 64)
    assert len(pickle.dumps(ds)) < (ds.cache.images.nbytes + ds.cache.trimaps.nbytes) / 4
    spawned = DataLoader(ds, batch_size=4, num_workers=1, multiprocessing_context="spawn")
    a, b = next(iter(spawned)), next(iter(DataLoader(ds, batch_size=4)))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])


def test_cache_is_reused_and_rebuilt_when_stale(synthetic_root, tmp_path):
    root = shutil.copytree(synthetic_root, tmp_path / "data")
    ds = OxfordPetDataset(root, "val")
    first = build_cache(ds, 48, tmp_path / "cache")
    assert build_cache(ds, 48, tmp_path / "cache").folder == first.folder  # reused
    assert build_cache(ds, 64, tmp_path / "cache").folder != first.folder  # other size, other cache
    img = root / "images" / f"{ds.names[3]}.jpg"
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))  # the source changed
    again = build_cache(ds, 48, tmp_path / "cache")
    assert again.folder != first.folder
    assert not list((tmp_path / "cache").glob("*.partial-*"))
    trimap = ds.trimap_path(ds.names[4])  # a corrected label: the cache must not train on the old one
    os.utime(trimap, ns=(trimap.stat().st_atime_ns, trimap.stat().st_mtime_ns + 10**9))
    assert build_cache(ds, 48, tmp_path / "cache").folder not in (first.folder, again.folder)


def test_a_long_build_is_said_before_it_starts_and_a_reuse_says_nothing(
    synthetic_root, tmp_path, monkeypatch
):
    """A run on the full set waited in silence while its cache was built: its first line came after."""
    import seglib.data.cache as cache

    ds = OxfordPetDataset(synthetic_root, "val")
    said: list[str] = []
    build_cache(ds, 32, tmp_path / "small", log=said.append)
    assert [line.split(" in ")[0] for line in said] == [f"seglib: cached {len(ds)} val images at 32 px"]
    monkeypatch.setattr(cache, "SAID_FROM", len(ds))  # as many as the full set's: said before, too
    said.clear()
    built = build_cache(ds, 32, tmp_path / "large", log=said.append, workers=2)
    assert said == [
        f"seglib: caching {len(ds)} val images at 32 px in {built.folder}, once (2 processes)",
        f"seglib: cached {len(ds)} val images at 32 px in {built.folder}",
    ]
    said.clear()
    build_cache(ds, 32, tmp_path / "large", log=said.append)
    assert said == []
    build_cache(ds, 48, tmp_path / "large", log=said.append, workers=1)
    assert said[0].endswith(", once (one process)")


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda f: (f / "meta.json").write_text("{bad"), "Expecting property name"),
        (lambda f: os.truncate(f / "images.u8", 100), "mmap length is greater than file size"),
        (lambda f: (f / "trimaps.u8").unlink(), "No such file or directory"),
        (lambda f: (f / "meta.json").unlink(), "No such file or directory"),
    ],
    ids=["meta-edited", "images-cut-short", "trimaps-deleted", "meta-deleted"],
)
def test_a_damaged_cache_is_said_and_built_again(synthetic_root, tmp_path, damage, named):
    """A cache file deleted, cut short or edited since the build stopped training with the library's bare
    words ("mmap length is greater than file size"), naming no folder."""
    ds = OxfordPetDataset(synthetic_root, "val")
    first = build_cache(ds, 48, tmp_path / "cache")
    images, trimaps = np.array(first.images), np.array(first.trimaps)
    damage(first.folder)
    said = []
    again = build_cache(ds, 48, tmp_path / "cache", log=said.append)
    assert again.folder == first.folder and np.array_equal(again.images, images)
    assert np.array_equal(again.trimaps, trimaps)
    assert said[0].startswith(f"seglib: the cache {first.folder} is damaged (") and named in said[0]
    assert said[0].endswith("; building it again")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [first.folder.name]


def test_unreadable_files_are_marked_not_cached(synthetic_root, tmp_path):
    root = shutil.copytree(synthetic_root, tmp_path / "data")
    ds = OxfordPetDataset(root, "val", on_corrupt="skip")
    jpg = ds.image_path(ds.names[2])
    jpg.write_bytes(jpg.read_bytes()[:500])
    cache = build_cache(ds, 32, tmp_path / "cache")
    assert cache.valid.tolist().count(False) == 1 and not cache.valid[2]
    ds.cache = cache
    assert "skipped" in ds[2] and "image" in ds[3]
    strict = OxfordPetDataset(root, "val")  # on_corrupt="raise": said when the cache opens, not at the step
    with pytest.raises(ValueError, match=rf"{ds.names[2]}\.jpg: cannot read the image"):
        strict.use_cache(tmp_path / "cache", 32)
    assert np.asarray(cache.images[3]).shape == (32, 32, 3)
    jpg = ds.image_path(ds.names[5])
    jpg.write_bytes(jpg.read_bytes()[:500])  # a second one: both named in one error
    with pytest.raises(
        ValueError, match=rf"2 of the 20 val samples cannot be used:\n- .*{ds.names[2]}.*\n- .*{ds.names[5]}"
    ):
        OxfordPetDataset(root, "val").use_cache(tmp_path / "cache2", 32)


BLOCKED_BUILD = """
import sys, time
import seglib.data.files as files
from seglib.data import OxfordPetDataset
from seglib.data.cache import build_cache

def blocked(path):  # the build is under way: stop at its first image until killed
    print("building", flush=True)
    time.sleep(600)

files.read_image = blocked
build_cache(OxfordPetDataset(sys.argv[1], "val"), 32, sys.argv[2], workers=1)
"""


@pytest.mark.slow  # two processes that import torch, one killed
def test_a_killed_build_is_removed_by_the_next_one_and_a_live_one_kept(synthetic_root, tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    builders = [
        subprocess.Popen(
            [sys.executable, "-c", BLOCKED_BUILD, str(synthetic_root), str(cache_dir)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    killed, live = builders
    try:
        for proc in builders:
            assert proc.stdout.readline() == "building\n"
        killed.kill()
        killed.wait()
        partial = {p.name.rpartition("-")[2]: p for p in cache_dir.glob("val-32-*.partial-*")}
        assert set(partial) == {str(killed.pid), str(live.pid)}
        build_cache(OxfordPetDataset(synthetic_root, "train", limit=4), 32, cache_dir)
        said = capsys.readouterr().out
        assert not partial[str(killed.pid)].exists() and partial[str(live.pid)].is_dir()
        assert "removed 1 half-built cache(s) left by processes that no longer run" in said
        assert partial[str(killed.pid)].name in said and said.count("seglib: removed") == 1
    finally:
        live.kill()
        live.wait()


def test_a_cache_built_by_several_processes_is_the_same(synthetic_root, tmp_path):
    root = shutil.copytree(synthetic_root, tmp_path / "data")
    ds = OxfordPetDataset(root, "trainval", on_corrupt="skip", limit=40)
    jpg = ds.image_path(ds.names[7])
    jpg.write_bytes(jpg.read_bytes()[:500])  # an unreadable one, in the second worker's share
    one = build_cache(ds, 48, tmp_path / "one", workers=1)
    three = build_cache(ds, 48, tmp_path / "three", workers=3)
    assert np.array_equal(one.images, three.images) and np.array_equal(one.trimaps, three.trimaps)
    assert one.valid.tolist() == three.valid.tolist() and not three.valid[7]
    assert one.errors == three.errors and list(three.errors) == [ds.names[7]]


CACHE_WITHOUT_ROOM = """
import sys
from seglib.data import OxfordPetDataset
from seglib.data.cache import build_cache
limit_file_size(100_000)
try:
    build_cache(OxfordPetDataset(sys.argv[1], "val"), 64, sys.argv[2], workers=2)
except OSError as e:
    print(e)
"""


@pytest.mark.slow
def test_a_cache_without_room_names_its_folder_and_what_to_do_and_leaves_nothing(synthetic_root, tmp_path):
    """Its space is taken before the build: on a full disk a write through the memory map killed the
    process with SIGBUS, and a write error named no folder."""
    cache_dir = tmp_path / "cache"
    p = run_with_file_limit(CACHE_WITHOUT_ROOM, str(synthetic_root), str(cache_dir))
    assert re.fullmatch(
        rf"\[Errno 27\] could not build the cache in {re.escape(str(cache_dir))}, 0\.3 MB \(File too large\); "
        r"free some disk space there, set cache_dir \(--cache_dir\) to a folder with room you can write to, or "
        r"train without it "
        r"\(cache=False, --no-cache\)\n",
        p.stdout,
    ), p.stdout + p.stderr[-3000:]
    assert list(cache_dir.iterdir()) == []  # no half-built cache left
    a_file = (
        tmp_path / "notes.txt"
    )  # not a matter of room (nor is a read-only folder): no advice to free space
    a_file.write_text("mine")
    ds = OxfordPetDataset(synthetic_root, "trainval", image_size=64, limit=4)
    with pytest.raises(OSError, match=r"\(Not a directory\); set cache_dir \(--cache_dir\) to a folder") as e:
        build_cache(ds, 64, a_file)
    assert "free some disk space" not in str(e.value) and a_file.read_text() == "mine"


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no posix_fallocate: the files stay sparse")
def test_a_full_disk_stops_the_cache_before_its_build(synthetic_root, tmp_path, monkeypatch):
    """A full disk takes a sparse file's size (truncate) but not its blocks: the blocks taken up front
    (posix_fallocate) find it full before a worker writes through the map and dies of SIGBUS."""
    import errno

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)  # the disk full, as it cannot be made here
    ds = OxfordPetDataset(synthetic_root, "val")
    with pytest.raises(OSError, match=r"could not build the cache in .*; free some disk space there") as e:
        build_cache(ds, 48, tmp_path / "cache")
    assert e.value.errno == errno.ENOSPC and list((tmp_path / "cache").iterdir()) == []


class _StopAtTheThird:
    """A pair reader that raises KeyboardInterrupt at its third pair, where Jupyter's stop button lands."""

    def __init__(self, read):
        self.read, self.calls = read, 0

    def __call__(self, image_path, trimap_path):
        self.calls += 1
        if self.calls == 3:
            raise KeyboardInterrupt
        return self.read(image_path, trimap_path)


def test_a_build_stopped_in_a_process_that_lives_on_leaves_no_half_built_cache(synthetic_root, tmp_path):
    """The next build removes a dead process's leftovers, but a notebook's kernel lives on: its half-built
    cache (the whole size, taken up front) stayed on disk until the kernel ended."""
    ds = OxfordPetDataset(synthetic_root, "trainval", image_size=64, limit=8)
    reader = _StopAtTheThird(ds.pair_reader())
    ds.pair_reader = lambda: reader
    with pytest.raises(KeyboardInterrupt):
        build_cache(ds, 64, tmp_path / "cache", workers=1)
    assert reader.calls == 3 and list((tmp_path / "cache").iterdir()) == []

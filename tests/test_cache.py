"""The decode-once cache: bit-identical samples, rebuilt when a source changes, unreadable files kept out."""

import os
import shutil

import numpy as np
import pytest
import torch

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
    full = OxfordPetDataset(synthetic_root, "val", image_size=64, return_full_mask=True).use_cache(
        tmp_path, 64
    )
    assert torch.equal(full[0]["mask_full"], torch.from_numpy(full.load_mask(0)))


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


def test_unreadable_files_are_marked_not_cached(synthetic_root, tmp_path):
    root = shutil.copytree(synthetic_root, tmp_path / "data")
    ds = OxfordPetDataset(root, "val", on_corrupt="skip")
    jpg = ds.image_path(ds.names[2])
    jpg.write_bytes(jpg.read_bytes()[:500])
    cache = build_cache(ds, 32, tmp_path / "cache")
    assert cache.valid.tolist().count(False) == 1 and not cache.valid[2]
    ds.cache = cache
    assert "skipped" in ds[2] and "image" in ds[3]
    strict = OxfordPetDataset(root, "val").use_cache(tmp_path / "cache", 32)
    with pytest.raises(ValueError, match=rf"{ds.names[2]}\.jpg: cannot read the image"):
        strict[2]
    assert np.asarray(cache.images[3]).shape == (32, 32, 3)

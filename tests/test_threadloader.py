"""`ThreadLoader` gives a worker-less DataLoader's batches (order, random transforms, unreadable images),
and `evaluate` gives the same table whatever number of threads reads its images."""

from __future__ import annotations

import importlib
import shutil

import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from seglib.data import (
    CorruptSampleError,
    EpochSampler,
    OxfordPetDataset,
    collate,
    eval_transform,
    train_transform,
)
from seglib.engine import evaluate
from seglib.engine.threadloader import ThreadLoader, default_read_threads
from seglib.models import build_model

ev = importlib.import_module("seglib.engine.evaluate")  # the module, not the function
threadloader = importlib.import_module("seglib.engine.threadloader")


def test_the_thread_loader_gives_the_dataloaders_batches_in_order(synthetic_root, tmp_path):
    root = tmp_path / "pets"
    shutil.copytree(synthetic_root, root)
    first = OxfordPetDataset(root, "trainval")
    jpg = first.image_path(first.names[5])
    jpg.write_bytes(jpg.read_bytes()[:300])  # a damaged image: named in `skipped` in the same batch
    # A random transform, seeded per sample by the sampler: each thread must read with its own copy.
    ds = OxfordPetDataset(root, "trainval", train_transform(32), on_corrupt="skip", return_full_mask=True)
    sampler = EpochSampler(len(ds), shuffle=True, seed=3)
    sampler.set_epoch(1)
    loader = DataLoader(ds, batch_size=5, sampler=sampler, collate_fn=collate)
    threads = ThreadLoader(ds, 5, sampler, threads=4, torch_threads=1)
    assert len(threads) == len(loader) == -(-len(ds) // 5)
    skipped, torch_threads = [], torch.get_num_threads()
    for a, b in zip(loader, threads, strict=True):
        assert torch.get_num_threads() == 1  # while reading (a GPU machine's CPU only reads)
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert a["name"] == b["name"] and a["skipped"] == b["skipped"]
        assert all(torch.equal(x, y) for x, y in zip(a["mask_full"], b["mask_full"], strict=True))
        skipped += b["skipped"]
    assert len(skipped) == 1 and skipped[0].startswith(first.names[5])
    assert torch.get_num_threads() == torch_threads  # restored
    strict = OxfordPetDataset(root, "trainval", eval_transform(32))
    with pytest.raises(CorruptSampleError, match=first.names[5]):
        list(ThreadLoader(strict, 5, range(len(strict)), threads=4))


def test_evaluate_scores_the_same_with_reading_threads(synthetic_root, monkeypatch):
    loaders = []
    real = ev.eval_loader
    monkeypatch.setattr(ev, "eval_loader", lambda *a, **k: loaders.append(real(*a, **k)) or loaders[-1])
    torch.manual_seed(0)
    model = build_model("unet", base_channels=4).eval()
    ds = OxfordPetDataset(synthetic_root, "val", image_size=32, border="ignore", limit=7)
    fast = {"device": "cpu", "amp": False, "channels_last": False, "progress": False, "batch_size": 3}
    alone = evaluate(model, ds, read_threads=0, tta=True, **fast)
    threads = evaluate(model, ds, read_threads=3, tta=True, **fast)
    assert len(alone) == 7 and alone.name.tolist() == ds.names
    pd.testing.assert_frame_equal(threads, alone, check_exact=True)
    assert [type(x).__name__ for x in loaders] == ["DataLoader", "ThreadLoader"]
    with pytest.raises(ValueError, match="read_threads=-1"):
        evaluate(model, ds, read_threads=-1, **fast)


def test_reading_threads_by_default(monkeypatch):
    monkeypatch.setattr(threadloader.os, "cpu_count", lambda: 16)
    assert default_read_threads(torch.device("cpu")) == 0  # a CPU's cores run the model
    assert default_read_threads(torch.device("cuda")) == 4  # more contend for the GIL
    monkeypatch.setattr(threadloader.os, "cpu_count", lambda: 3)
    assert default_read_threads(torch.device("cuda")) == 2  # a core left to the main thread

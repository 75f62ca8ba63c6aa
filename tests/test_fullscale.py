"""The workbook at full scale: the release-sized synthetic set, the GPU profile's studies, evaluation memory
that does not grow with the number of images, `python -m seglib.fullscale` and benchmarks/gpu_workbook.sh
at small size. No timing is asserted: the figures are the benchmarks' output."""

from __future__ import annotations

import filecmp
import gc
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seglib.bench import PeakRSS
from seglib.data import OxfordPetDataset, make_fullsize_pets, read_list, select_split
from seglib.data import synthetic as synthetic_module
from seglib.data.synthetic import RELEASE_SIZES, release_image_size
from seglib.engine import evaluate
from seglib.models import build_model

REPO = Path(__file__).resolve().parents[1]


# --- the release-sized synthetic set -------------------------------------------------------------------
def test_release_sizes_have_the_releases_spread():
    rng = np.random.default_rng(0)
    h, w = np.array([release_image_size(rng) for _ in range(sum(RELEASE_SIZES.values()))]).T
    assert w.min() >= 114 and w.max() <= 3264 and h.min() >= 114 and h.max() <= 3264
    assert 0.6 < np.mean(np.maximum(h, w) == 500) < 0.72  # most of the release is 500 px on its long side
    assert 0.03 < np.mean(np.maximum(h, w) > 500) < 0.08 and w.max() > 2000  # and a long tail
    assert 0.25 < np.mean(h > w) < 0.4  # portrait about one time in three
    assert 0.15 < np.mean(h * w) / 1e6 < 0.22  # MPx per image, as in the real sample's files


@pytest.fixture
def small_extremes(monkeypatch):
    """The widest and narrowest slots made small: a 3264 px image takes seconds to draw."""
    monkeypatch.setattr(synthetic_module, "_EXTREMES", ((300, 400), (152, 114)))


def test_fullsize_set_is_the_same_for_any_number_of_workers(tmp_path, small_extremes):
    one = make_fullsize_pets(tmp_path / "one", n_trainval=20, n_test=6, workers=1)
    two = make_fullsize_pets(tmp_path / "two", n_trainval=20, n_test=6, workers=2)
    names = sorted(p.name for p in (one / "images").iterdir())
    assert len(names) == 26 and not filecmp.cmpfiles(one / "images", two / "images", names, shallow=False)[1]
    for f in ("trainval.txt", "test.txt", "list.txt"):
        assert (one / "annotations" / f).read_text() == (two / "annotations" / f).read_text()
    trainval = read_list(one / "annotations" / "trainval.txt")
    assert [len(select_split(trainval, s)) for s in ("train", "val")] == [18, 2]  # the i % 10 rule
    breeds = [e.breed for e in trainval]
    assert breeds == sorted(breeds, key=breeds.index)  # in blocks, as the official lists are
    widths = [Image.open(one / "images" / f"{e.name}.jpg").width for e in trainval[:3]]
    assert widths[1:] == [400, 114]  # the extremes' slots
    test = OxfordPetDataset(one, "test", return_full_mask=True)
    assert len(test) == 6 and test[0]["mask_full"].shape == test.load_mask(0).shape
    assert not list(tmp_path.glob(".*partial"))


def test_the_full_plan_has_the_releases_splits():
    jobs, lists = synthetic_module._plan(**RELEASE_SIZES)
    assert (len(lists["trainval"]), len(lists["test"])) == (3680, 3669) and len(jobs) == 7349
    trainval = [line.split()[0] for line in lists["trainval"]]
    assert len(set(trainval + [line.split()[0] for line in lists["test"]])) == 7349
    assert sum(1 for i in range(3680) if i % 10) == 3312  # train 3312 / val 368, as the release
    assert {line.split()[1] for line in lists["test"]} == {str(c) for c in range(1, 38)}  # all 37 breeds


# --- evaluation memory ---------------------------------------------------------------------------------
def test_evaluation_memory_does_not_grow_with_the_number_of_images(synthetic_root):
    """The peak RSS of evaluating 200 images at original resolution is that of 20: rows are kept, not
    images, masks or logits."""
    model = build_model("unet", base_channels=4).eval()

    def peak(n: int) -> float:
        ds = OxfordPetDataset(synthetic_root, "trainval", image_size=32, limit=n)
        gc.collect()
        with PeakRSS(torch.device("cpu")) as mem:
            df = evaluate(model, ds, device="cpu", progress=False, num_workers=0)
        assert len(df) == n
        return mem.peak

    peak(20)  # warm-up: the allocator's arenas, the kernels' first calls
    small, large = peak(20), peak(200)
    # 180 more images of about 0.15 MPx: keeping their masks would add about 27 MB, their logits 100 MB
    assert large - small < 15, (small, large)


# --- python -m seglib.fullscale and benchmarks/gpu_workbook.sh ------------------------------------------
@pytest.mark.slow
def test_fullscale_cpu_parts_at_small_size(tmp_path, small_extremes, capsys):
    from seglib import fullscale

    root, made = fullscale.make_set(tmp_path / "pets", n_trainval=30, n_test=10, workers=2)
    assert made[0]["value"] > 0 and fullscale.make_set(root, 30, 10)[1][0]["note"] == "reused"
    cache = fullscale.cache_rows(root, tmp_path / "cache", image_size=32, workers=2)
    assert [r["what"] for r in cache] == [
        "cache of 30 trainval images at 32 px, one process",
        "cache of 30 trainval images at 32 px, parallel",
    ]
    evaluation = fullscale.evaluation_rows(root, "cpu", image_size=32)
    assert (
        evaluation[0]["what"].startswith("evaluation of 2 test images")
        and "10 test images" in evaluation[2]["what"]
    )
    assert evaluation[-1]["what"].strip() == "memory growth, all against a quarter"
    result = {"machine": fullscale.machine(torch.device("cpu")), "cache": cache, "evaluation": evaluation}
    fullscale._report(result, tmp_path / "out")
    out = capsys.readouterr().out
    assert "| what | value | unit | note |" in out and "native bf16" in out and "machine: no GPU" in out
    assert json.loads((tmp_path / "out" / "fullscale.json").read_text())["machine"]["cpu"]


@pytest.mark.slow
def test_gpu_workbook_script_runs_at_small_size_on_the_cpu(synthetic_root, tmp_path):
    """The GPU script end to end on the CPU: 02, 03 and 04 under the tiny profile on a small set, then the
    sample part (06, both recipes) with the synthetic set standing in for the real sample."""
    work = tmp_path / "work"
    shutil.copytree(synthetic_root, work / "pets")  # a set already there is reused: nothing to draw
    env = {
        **os.environ,
        "SEGLIB_PYTHON": sys.executable,
        "SEGLIB_PROFILE": "tiny",
        "SEGLIB_DEVICE": "cpu",
        "SEGLIB_WORKDIR": str(work),
        "SEGLIB_SAMPLE": str(synthetic_root),
        "SEGLIB_SAMPLE_EPOCHS": "1",
        "SEGLIB_SAMPLE_MODELS": "unet",
        "SEGLIB_DEADLINE_S": "0",
        "OUT": str(tmp_path / "out"),
    }
    p = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_workbook.sh")], env=env, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "fullscale.json").read_text())
    assert [r["notebook"] for r in result["notebooks"]] == [
        "02_train_unet.ipynb",
        "03_train_resnet34_unet.ipynb",
        "04_evaluation.ipynb",
    ]
    models = {r["model"]: r for r in result["models"]}
    assert set(models) == {"unet", "resnet34_unet"}
    for r in models.values():
        assert r["test images"] == 20 and r["scored on"] == "cpu" and 0 <= r["test Dice (original res.)"] <= 1
        assert r["images/s, 1st epoch"] > 0 and r["evaluation s"] > 0
    assert models["unet"]["epochs"] == 2 and models["unet"]["train images"] == 16  # the tiny profile's
    sample = result["sample"]
    assert [(r["model"], r["recipe"], r["epochs"]) for r in sample] == [
        ("unet", "original", 1),
        ("unet", "recommended+batch_size=8", 1),
    ]
    md = (tmp_path / "out" / "fullscale.md").read_text()
    assert "## models" in md and "## sample" in md and "machine: no GPU" in md
    assert (tmp_path / "out" / "log.txt").is_file()
    executed = json.loads((work / "results" / "notebooks" / "04_evaluation.ipynb").read_text())
    said = json.dumps([o for c in executed["cells"] for o in c.get("outputs", [])])
    assert "device cpu" in said  # 04 evaluates on its device (its bar shows only past 10 s: not here)


def test_gpu_script_says_what_is_missing(tmp_path):
    """Before any work: a Python without the notebooks' packages is named with the way to the wheels."""
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')  # -S: no site-packages
    fake.chmod(0o755)
    env = {**os.environ, "SEGLIB_PYTHON": str(fake), "OUT": str(tmp_path / "out"), "PYTHONPATH": ""}
    p = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_workbook.sh")], env=env, capture_output=True, text=True
    )
    assert p.returncode != 0
    assert "missing Python packages: albumentations, papermill" in p.stderr and "gpu_wheels.sh" in p.stderr


# --- the gpu profile's studies (notebooks 05 and 06): planned, nothing trained or timed --------------------
def test_the_gpu_profiles_studies(tmp_path):
    from seglib.study import RECIPE_STUDIES, SCHEDULER_STUDIES, plan_recipe_study, plan_scheduler_study
    from seglib.workspace import Workspace

    data = tmp_path / "data"
    ws = Workspace(str(data), "oxford-pet", data, "oxford-pet", "gpu", tmp_path / "results", device="cpu")
    plan = plan_scheduler_study(ws.config, "gpu", "unet", n_train=3312)
    assert plan.epochs == 8 and plan.steps_per_epoch == 104  # all 3312 images in batches of 32
    for cfg in plan.configs.values():
        assert (cfg.model_kwargs, cfg.image_size, cfg.batch_size, cfg.train_limit) == ({}, 256, 32, None)
        assert cfg.device == "cpu"  # the notebook's device
    secs = {"original": {256: 6.0}, "recommended": {256: 5.0}}  # seconds per epoch, as if timed
    study = RECIPE_STUDIES["gpu"]
    jobs = plan_recipe_study(ws.config, study, "resnet34_unet", "gpu", epoch_seconds=secs).jobs
    runs = [(label, budget, cfg.epochs, cfg.batch_size, cfg.image_size) for label, budget, cfg in jobs]
    assert runs == [
        ("original", None, 40, 8, 256),  # one 4-minute run, read along its models; the original's batch
        ("recommended", 1.0, 12, 32, 256),  # one run per budget, its schedule fitted to it
        ("recommended", 2.0, 24, 32, 256),
        ("recommended", 4.0, 48, 32, 256),
    ]
    assert SCHEDULER_STUDIES["gpu"].changes == {"epochs": 8} and study.every == 8 and study.test_limit is None


# --- 04's tables and the viewer over 3,669 rows ----------------------------------------------------------
def _release_sized_test_split(root: Path, source: Path) -> OxfordPetDataset:
    """A test split of 3,669 list lines in the official layout whose files are links to 20 small images."""
    _, lists = synthetic_module._plan(n_trainval=10, n_test=RELEASE_SIZES["n_test"])
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    src = OxfordPetDataset(source, "test")
    for k, line in enumerate(lists["trainval"] + lists["test"]):
        name, other = line.split()[0], src.names[k % len(src)]
        os.link(src.image_path(other), root / "images" / f"{name}.jpg")
        os.link(src.trimap_path(other), root / "annotations" / "trimaps" / f"{name}.png")
    for split, lines in lists.items():
        (root / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return OxfordPetDataset(root, "test")


def test_04s_tables_and_the_viewer_take_3669_rows(synthetic_root, tmp_path):
    import pandas as pd

    from seglib.engine import summarize
    from seglib.viewer import MaskViewer

    test = _release_sized_test_split(tmp_path / "pets", synthetic_root)
    n = len(test)
    rng = np.random.default_rng(0)
    tp, fp, fn = rng.integers(0, 1000, (3, n))
    df = pd.DataFrame(
        {"name": test.names, "breed": test.breeds, "species": test.species, "tp": tp, "fp": fp, "fn": fn}
    )
    df["dice"] = df["dice_model"] = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    df["iou"] = df["iou_model"] = tp / np.maximum(tp + fp + fn, 1)
    per_image = pd.concat([df.assign(model="unet"), df.assign(model="resnet34_unet")], ignore_index=True)
    summary = pd.concat({m: summarize(g) for m, g in per_image.groupby("model")}, names=["model"])
    assert (summary.xs("original", level="resolution")["images"] == n).all() and n == 3669
    by_breed = per_image.pivot_table(index="breed", columns="model", values="dice", aggfunc="mean")
    assert by_breed.shape == (37, 2)
    viewer = MaskViewer(test, table=df, sort="dice ascending")
    assert viewer.index.max == n - 1 and viewer.current == int(df.dice.idxmin())  # the worst first
    viewer.step(n)
    assert viewer.current == int(df.dice.idxmax())
    assert viewer.jump_to(test.names[1234]) and viewer.current == 1234
    assert viewer.render().shape == (*test.original_size(1234), 3)

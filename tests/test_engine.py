import dataclasses
import io
import json
import math
import os
import re

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from torch import nn

from seglib.data import OxfordPetDataset
from seglib.data.revisions import SAMPLES_REVISION
from seglib.engine import (
    HISTORY_COLUMNS,
    CheckpointError,
    TrainConfig,
    TrainingInterrupted,
    evaluate,
    fit,
    load_checkpoint,
    load_model,
    loop,
    lr_curve,
    mean_interval,
    number_list,
    predict,
    save_checkpoint,
    summarize,
)
from seglib.engine.checkpoint import FORMAT, model_spec
from seglib.engine.environment import read_environment, record_start
from seglib.engine.evaluate import MODEL_COUNTS
from seglib.engine.progress import progress_bar
from seglib.engine.runtime import cpu_kind
from seglib.engine.schedulers import dead_milestones_note
from seglib.engine.tracking import WandbLogger
from seglib.models import build_model
from seglib.provenance import git_commit


# --- config ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("xpu", r"device='xpu': seglib runs on 'cpu' or 'cuda\[:N\]'"),
        ("meta", r"device='meta': seglib runs on"),
        ("gpu", r"device='gpu' is not a device name"),
        ("mps", r"device='mps' but Apple's MPS is not available here"),
    ],
)
def test_a_device_seglib_cannot_run_on_is_named_before_any_work(tiny_config, tmp_path, device, message):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(ValueError, match=message):
        fit(tiny_config(device=device))
    assert not (tmp_path / "runs").exists()  # no run folder, no cache


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"model": "segnet"}, r"unknown model 'segnet'; choose one of \['resnet34_unet', 'unet'\]"),
        (
            {"scheduler": "plateau"},
            r"unknown scheduler 'plateau'; choose one of \['none', 'cosine', 'onecycle'",
        ),
        ({"dataset": "coco"}, r"unknown dataset 'coco'"),
        ({"split_seed": None}, r"split_seed must be an integer >= 0, got None"),  # a new split at each read
        ({"border": "edge"}, r"unknown border 'edge'"),
        ({"epochs": 0}, r"epochs must be a positive integer, got 0"),
        ({"batch_size": -8}, r"batch_size must be a positive integer, got -8"),
        ({"image_size": 16}, r"image_size must be from 32 px"),
        ({"lr": 0.0}, r"lr must be positive"),
        ({"milestones": [30, 10]}, r"milestones must be increasing"),
        ({"lr": "abc"}, r"lr must be a finite number, got 'abc'"),  # a recipe's "+lr=abc": a TypeError before
        ({"gamma": "0.1"}, r"gamma must be a finite number"),
        ({"weight_decay": float("nan")}, r"weight_decay must be a finite number, got nan"),
        ({"milestones": [3, "a"]}, r"milestones must be a list of epochs \(integers\), e\.g\. \[30, 40\]"),
        ({"milestones": 30}, r"milestones must be a list of epochs \(integers\), e\.g\. \[30, 40\]; got 30"),
        # a config.json edited by hand: "no" is a true value to bool(), and turned mixed precision on
        ({"amp": "no"}, r"amp must be None \(auto\), True or False, got 'no'"),
        ({"channels_last": 0}, r"channels_last must be None \(auto\), True or False, got 0"),
        ({"overwrite": "false"}, r"overwrite must be True or False, got 'false'"),
        ({"deterministic": 1}, r"deterministic must be True or False, got 1"),
        ({"num_workers": "2"}, r"num_workers must be None or an integer >= 0, got '2'"),
        # a run validated (and chose best.pt) on a Dice of all-pet or no-pet masks
        ({"threshold": 0.0}, r"threshold must be in \(0, 1\), got 0.0"),
        ({"threshold": 1.0}, r"threshold must be in \(0, 1\), got 1.0"),
        ({"budget_minutes": 0}, r"budget_minutes must be None \(off\) or a positive number"),
        # patience 0 stopped a run after its first epoch
        ({"patience": 0}, r"patience must be None \(off\) or a positive number of epochs, got 0"),
        # the models refuse these only once the data is cached
        ({"model_kwargs": {"base_channels": 0}}, r"model_kwargs base_channels must be a positive integer"),
        ({"model_kwargs": {"base_channels": "16"}}, r"base_channels must be a positive integer, e.g. 16"),
        ({"model_kwargs": {"dropout": 1.0}}, r"model_kwargs dropout must be a number in \[0, 1\)"),
        (
            {"model": "resnet34_unet", "model_kwargs": {"encoder_weights": "imagenet", "base_channels": 32}},
            r"encoder_weights need the ResNet34's own widths \(base_channels=64\), got base_channels=32",
        ),
        ({"milestones": [0, 10]}, r"milestones must be increasing epochs from 1"),
        # the run lands in output_dir/run_name: "." emptied output_dir with overwrite, "../x" wrote outside it
        ({"run_name": "."}, r"run_name '\.' is no folder of its own: it must be one plain folder name in"),
        ({"run_name": ".."}, r"run_name '\.\.' is no folder of its own"),
        ({"run_name": ""}, r"run_name '' is empty: .*, e\.g\. 'unet-cosine-1'"),
        ({"run_name": "../escaped"}, r"'\.\./escaped' has a folder separator in it: .*, e\.g\. 'escaped'$"),
        ({"run_name": "unet/lr=1e-3"}, r"has a folder separator in it: .*, e\.g\. 'unet-lr=1e-3'$"),
        ({"run_name": "a\0b"}, r"has a NUL character in it: .*, e\.g\. 'a-b'$"),
        ({"run_name": "x" * 224}, r"is 224 bytes long, over the 223 a run's name may take beside seglib's"),
        ({"run_name": "é" * 112}, r"is 224 bytes long"),  # bytes, as the file system counts them
        ({"run_name": 5}, r"run_name must be None \(named by model, scheduler and time\) or text, got 5"),
    ],
)
def test_config_rejects_bad_values_before_any_work(kw, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kw)


@pytest.mark.parametrize("name", ["unet-lr=1e-3", "x" * 223, ".hidden", "run with spaces"])
def test_config_takes_a_plain_run_name_up_to_its_limit(name):
    assert TrainConfig(run_name=name).run_name == name


# --- schedulers ------------------------------------------------------------------------------------
def test_lr_curves():
    def curve(**kw):
        return lr_curve(TrainConfig(epochs=10, lr=1e-3, **kw), steps_per_epoch=5)

    assert curve() == [1e-3] * 50
    cos = curve(scheduler="cosine")
    assert cos[0] == 1e-3 and cos[5] < cos[0] and cos[4] == cos[0]  # per epoch
    assert cos[-1] == pytest.approx(1e-3 * (1 + math.cos(math.pi * 9 / 10)) / 2)
    one = curve(scheduler="onecycle")
    assert len(set(one[:5])) == 5  # per batch
    assert max(one) == pytest.approx(1e-3) and one.index(max(one)) == 14  # 30% of 50 steps
    assert one[-1] < 1e-6
    step = curve(scheduler="step", step_size=3, gamma=0.5)
    assert step[14] == 1e-3 and step[15] == pytest.approx(5e-4) and step[30] == pytest.approx(2.5e-4)
    multi = curve(scheduler="multistep")  # milestones at 50% and 75% of the epochs
    assert multi[24] == 1e-3 and multi[25] == pytest.approx(1e-4) and multi[35] == pytest.approx(1e-5)
    # each scheduler's own settings, away from torch's defaults
    floor = curve(scheduler="cosine", min_lr=1e-4)
    assert floor[-1] == pytest.approx(1e-4 + (1e-3 - 1e-4) * (1 + math.cos(math.pi * 9 / 10)) / 2)
    late = curve(scheduler="onecycle", pct_start=0.5)
    assert late.index(max(late)) == 24  # 50% of 50 steps
    half = curve(scheduler="multistep", gamma=0.5)
    assert half[25] == pytest.approx(5e-4) and half[35] == pytest.approx(2.5e-4)
    last = curve(scheduler="multistep", milestones=[9])  # the last milestone that acts: epoch 10 decayed
    assert last[44] == 1e-3 and last[45] == pytest.approx(1e-4)
    # multistep decays after epoch m: a milestone at or past the last epoch never acts. Said when a run
    # starts, not refused: a budget's plan can shorten a recipe below its milestones, and runs saved so load
    dead = TrainConfig(scheduler="multistep", epochs=20, milestones=[10, 20])
    assert dead_milestones_note(dead) == (
        "seglib: milestones [20] reach the last epoch (epochs=20): multistep decays the lr after epoch m, so "
        "it never acts in this run"
    )
    assert dead_milestones_note(TrainConfig(scheduler="multistep", epochs=20, milestones=[10, 19])) == ""
    assert dead_milestones_note(TrainConfig(scheduler="cosine", epochs=5, milestones=[8])) == ""


# --- training ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fit_writes_a_complete_run(tiny_config, tmp_path):
    cfg = tiny_config(scheduler="onecycle", run_name="r")
    result = fit(cfg)
    run = tmp_path / "runs" / "r"
    assert result.run_dir == run and result.data == "oxford-pet"
    files = {"config.json", "history.csv", "lr.csv", "best.pt", "last.pt", "environment.json"}
    assert {p.name for p in run.iterdir()} == files
    # what the run ran on: seglib's commit, the libraries, the machine, as the run's first line said
    (start,) = read_environment(run)
    assert start["packages"]["torch"] == torch.__version__ and start["seglib_commit"] == git_commit()
    assert start["device"] == "cpu" and start["machine"] == cpu_kind() and start["world_size"] == 1
    assert (start["epoch"], start["step"]) == (0, 0) and start["first_line"].startswith("seglib: unet")
    assert start["first_line"].startswith("seglib: unet (122k parameters)")  # 122,093: it said "0.1M"
    assert start["precision"] in start["first_line"] and start["allocator"] in start["first_line"]
    assert start["data"] == "oxford-pet" and start["samples_revision"] == SAMPLES_REVISION
    history = pd.read_csv(run / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS and history.epoch.tolist() == [1, 2]
    assert history[["train_loss", "val_loss"]].notna().all().all()
    assert ((history.val_dice >= 0) & (history.val_dice <= 1)).all()
    saved = TrainConfig.load(run / "config.json")
    # the run records the memory format it chose for channels_last=None (engine.fastpath)
    assert cfg.channels_last is None and saved.channels_last in (True, False)
    assert saved.device_data is False and saved.compile is False  # a CPU's automatic choices, recorded
    chosen = {k: getattr(saved, k) for k in ("channels_last", "device_data", "compile")}
    assert saved == result.config == dataclasses.replace(cfg, **chosen)
    lrs = pd.read_csv(run / "lr.csv")
    assert lrs.lr.tolist() == pytest.approx(lr_curve(cfg, steps_per_epoch=3))  # the lr of every step
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == 6 and ckpt["config"]["model"] == "unet"
    assert {"optimizer", "scheduler", "scaler", "history"} <= set(ckpt)
    assert load_checkpoint(run / "best.pt")["val_dice"] == pytest.approx(history.val_dice.max())


@pytest.mark.slow
def test_the_bar_shows_the_lr_of_the_step_it_took(tiny_config, capsys, monkeypatch):
    """The bar showed the lr after the scheduler had stepped, the next step's: at the end of an epoch not
    the lr its line and history.csv give (onecycle's last epoch: 7.7e-05 shown, 4.0e-09 taken)."""
    every_update = {
        "mininterval": 0,
        "miniters": 1,
        "delay": 0,
    }  # the bar drawn at each step: its last lr seen
    monkeypatch.setattr(loop, "progress_bar", lambda it=None, **kw: progress_bar(it, **kw | every_update))
    run = fit(tiny_config(epochs=2, scheduler="onecycle", log_every=1, progress=True))
    err = capsys.readouterr().err
    for epoch, lr in zip(run.history.epoch, run.history.lr, strict=True):
        shown = re.findall(rf"epoch {epoch}/2[^\r\n]*?lr=([0-9.e+-]+)", err)
        assert shown and shown[-1] == f"{lr:.2e}", (epoch, shown)


@pytest.mark.slow
def test_the_run_names_every_folder_it_writes(tiny_config, tmp_path, capsys):
    run = fit(tiny_config(epochs=1, run_name="named", cache=True, cache_dir=str(tmp_path / "cache")))
    said = capsys.readouterr().out.splitlines()
    first = next(line for line in said if line.startswith("seglib: unet"))  # after the cache's build lines
    assert f"run folder {run.run_dir}; cache folder {tmp_path / 'cache'}" in first
    assert first.endswith("; AdamW (fused)")  # what it trains with (engine/optimizer.py)
    written = [p for p in tmp_path.iterdir() if p.name != "runs"] + list((tmp_path / "runs").iterdir())
    assert written and all(str(p) in first for p in written), (written, first)


@pytest.mark.slow
def test_runs_are_never_silently_overwritten(tiny_config):
    a = fit(tiny_config(epochs=1, run_name="same"))
    b = fit(tiny_config(epochs=1, run_name="same"))
    assert a.run_dir.name == "same" and b.run_dir.name == "same-2"
    c = fit(tiny_config(epochs=1, run_name="same", overwrite=True))
    assert c.run_dir.name == "same"


@pytest.mark.slow
def test_same_seed_same_result(tiny_config):
    # dropout draws from torch's generator: the loaders must leave it alone, with or without workers
    model = {"base_channels": 4, "dropout": 0.2}
    a = fit(tiny_config(epochs=2, num_workers=0, model_kwargs=model))
    b = fit(tiny_config(epochs=2, num_workers=2, model_kwargs=model))  # workers do not change the data
    assert a.history.train_loss.tolist() == b.history.train_loss.tolist()
    for (n, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), n


@pytest.mark.parametrize("workers", [0, 1])
def test_evaluate_leaves_torchs_random_numbers_alone(synthetic_root, workers):
    """A notebook's evaluate between two draws must not move them (its loaders have their own generator)."""
    ds = OxfordPetDataset(synthetic_root, "test", image_size=32, limit=5)
    model = build_model("unet", base_channels=4).eval()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    evaluate(model, ds, batch_size=2, progress=False, num_workers=workers)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("mode", ["auto", "text"])
def test_the_progress_bar_iterates_its_loader_once(monkeypatch, mode):
    """A second iter() of a DataLoader with persistent workers throws its prefetched batches away."""
    monkeypatch.setenv("SEGLIB_PROGRESS", mode)
    calls = []

    class Loader:
        def __iter__(self):
            calls.append(1)
            return iter(range(3))

    assert list(progress_bar(Loader(), disable=True)) == [0, 1, 2]
    assert len(calls) == 1


def test_text_bars_of_short_summarised_loops_print_nothing(monkeypatch):
    """Under papermill (SEGLIB_PROGRESS=text) an epoch's loop of a few seconds leaves no bar in the
    notebook (its epoch line follows), nor does an evaluation's (its bar goes at its end: the executed copy
    kept "evaluate: 0%" and a blank line); a bar meant to stay, a study's, still shows."""
    monkeypatch.setenv("SEGLIB_PROGRESS", "text")
    epoch, evaluation, kept = io.StringIO(), io.StringIO(), io.StringIO()
    bar = progress_bar(range(3), desc="epoch 1/2 train", leave=False, file=epoch, summarised=True)
    assert list(bar) == [0, 1, 2]
    assert epoch.getvalue() == ""
    assert list(progress_bar(range(3), desc="evaluate", leave=False, file=evaluation)) == [0, 1, 2]
    assert evaluation.getvalue() == ""
    assert list(progress_bar(range(3), desc="scoring", file=kept)) == [0, 1, 2]
    assert "scoring: 100%" in kept.getvalue()


def test_bars_into_a_log_are_lines_without_carriage_returns(monkeypatch):
    """`python -m seglib train ... > log.txt 2>&1` (a batch job): tqdm's carriage returns made one 3 kB line
    of a 2-epoch run's bars. Into a file that is no terminal a bar writes a line per update (every 10 s at
    most), and none for an epoch's loop shorter than that, whose epoch line follows."""
    monkeypatch.delenv("SEGLIB_PROGRESS", raising=False)
    log, epoch = io.StringIO(), io.StringIO()
    assert list(progress_bar(range(3), desc="scoring", file=log, mininterval=0)) == [0, 1, 2]
    lines = log.getvalue().split("\n")
    assert "\r" not in log.getvalue() and lines[-1] == ""
    assert [line.split("|")[0] for line in lines[:-1]] == [f"scoring: {p:>3}%" for p in (0, 33, 67, 100)]
    bar = progress_bar(range(3), desc="epoch 1/2 train", leave=False, file=epoch, summarised=True)
    assert list(bar) == [0, 1, 2]
    assert epoch.getvalue() == ""


@pytest.mark.slow
def test_small_unet_learns_the_synthetic_set(tiny_config):
    """base_channels 16 at 64 px, 12 epochs: the slowest single training of the suite."""
    cfg = tiny_config(
        model_kwargs={"base_channels": 16},
        image_size=64,
        epochs=12,
        train_limit=None,
        val_limit=None,
        lr=2e-3,
        scheduler="onecycle",
    )
    result = fit(cfg)
    h = result.history
    print(h.round(4).to_string())
    assert h.train_loss.iloc[-1] < 0.5 * h.train_loss.iloc[0]
    assert result.best_val_dice >= 0.85


@pytest.mark.slow
def test_resnet34_unet_trains(tiny_config):
    result = fit(
        tiny_config(
            model="resnet34_unet",
            model_kwargs={},
            image_size=64,
            epochs=3,
            train_limit=24,
            lr=1e-3,
        )
    )
    assert result.history.train_loss.iloc[-1] < result.history.train_loss.iloc[0]
    assert isinstance(load_model(result.best_checkpoint), type(result.model))


@pytest.mark.slow
def test_wandb_logs_offline(tiny_config, tmp_path, monkeypatch):
    pytest.importorskip("wandb")  # the dev extra installs it
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    result = fit(tiny_config(epochs=2, use_wandb=True, run_name="w"))
    runs = list((result.run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0


def test_wandb_missing_is_a_warning(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "wandb", None)  # import wandb -> ImportError
    with pytest.warns(UserWarning, match="wandb package is not installed"):
        logger = WandbLogger(True, "p", "n", {}, tmp_path)
    assert not logger.active
    logger.log({"x": 1.0}, step=1)
    logger.finish()


def test_validation_scores_are_the_val_images_means_in_eval_mode(tiny_config, synthetic_root):
    """history's val_dice is the mean per-image Dice at model resolution and val_loss the mean per-image
    BCE over the 6 val images (batches of 4 and 2: each batch weighted by its images), the model in eval
    mode: what evaluate and the loss give image by image."""
    from seglib.engine.losses import bce_loss

    result = fit(tiny_config(epochs=1, amp=False, run_name="v"))
    row = result.history.iloc[-1]
    model = load_model(result.run_dir / "last.pt")
    val = OxfordPetDataset(synthetic_root, "val", image_size=32, limit=6)
    scores = evaluate(model, val, device="cpu", amp=False, channels_last=False, progress=False)
    assert row.val_dice == pytest.approx(scores.dice_model.mean(), abs=1e-5)
    with torch.no_grad():
        losses = [bce_loss(model(val[i]["image"][None]), val[i]["mask"][None]).item() for i in range(6)]
    assert row.val_loss == pytest.approx(np.mean(losses), abs=1e-5)


def test_a_new_run_says_its_milestones_never_act(tiny_config, capsys):
    fit(tiny_config(epochs=1, scheduler="multistep", milestones=[1], run_name="m"))
    assert "seglib: milestones [1] reach the last epoch (epochs=1)" in capsys.readouterr().out


def test_the_first_of_equal_best_epochs_is_kept(tiny_config, monkeypatch):
    """Ties keep the earlier model (scheduler_table reads it so): a later epoch must beat it."""
    from seglib.engine import train
    from seglib.engine.state import EpochStats

    monkeypatch.setattr(train, "evaluate_epoch", lambda *a, **k: EpochStats(1, 6, 3.0, 3.0))  # Dice 0.5
    result = fit(tiny_config(epochs=3, run_name="tie"))
    assert result.history.val_dice.tolist() == [0.5, 0.5, 0.5]
    assert result.best_epoch == 1 and load_checkpoint(result.best_checkpoint)["epoch"] == 1


# --- checkpoints ---------------------------------------------------------------------------------------
def test_checkpoint_rebuilds_its_model(tmp_path):
    model = build_model("unet", base_channels=8, num_classes=2)
    save_checkpoint(tmp_path / "m.pt", model, model_spec(model, "unet", {"base_channels": 8}))
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.base_channels == 8 and loaded.num_classes == 2 and not loaded.training
    x = torch.randn(1, 3, 48, 48)
    assert torch.equal(model.eval()(x), loaded(x))


def test_a_checkpoint_from_encoder_weights_loads_without_them(tmp_path):
    """The weights are in the state_dict: a moved weights file (or "imagenet" offline) must not matter."""
    weights = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), weights)
    kwargs = {"encoder_weights": str(weights), "base_channels": 64}
    model = build_model("resnet34_unet", **kwargs)
    save_checkpoint(tmp_path / "m.pt", model, model_spec(model, "resnet34_unet", kwargs))
    weights.unlink()
    loaded = load_model(tmp_path / "m.pt")
    assert torch.equal(loaded.encoder.conv1.weight, model.encoder.conv1.weight)


def test_bad_checkpoints_say_what_they_are(tmp_path):
    model = build_model("unet", base_channels=4)
    save_checkpoint(tmp_path / "unet.pt", model, model_spec(model, "unet", {"base_channels": 4}))
    with pytest.raises(CheckpointError, match=r"saved for model 'unet'.*not for model 'resnet34_unet'"):
        load_model(tmp_path / "unet.pt", expect_model="resnet34_unet")
    with pytest.raises(CheckpointError, match=r"num_classes=1, not 3"):
        load_model(tmp_path / "unet.pt", expect_num_classes=3)
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match=r"bare state_dict.*build_model"):
        load_model(tmp_path / "bare.pt")
    # One byte flipped inside the weights: torch.load alone would return the changed weights.
    data = bytearray((tmp_path / "unet.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "damaged.pt").write_bytes(data)
    with pytest.raises(
        CheckpointError, match=r"damaged\.pt is damaged: its record '.*/data/\d+' fails its checksum"
    ):
        load_model(tmp_path / "damaged.pt")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.txt is not a checkpoint torch can read"):
        load_model(tmp_path / "notes.txt")
    (tmp_path / "config.json").write_text('{"model": "unet"}')  # was said to "unpickle Python objects"
    with pytest.raises(
        CheckpointError, match=r"config\.json is not a checkpoint: neither .*b'\{\"model\": \"u'\. Point"
    ):
        load_model(tmp_path / "config.json")
    torch.save(model, tmp_path / "whole.pt")  # the model object pickled, not its state_dict
    with pytest.raises(
        CheckpointError, match=r"whole\.pt .*unpickle Python objects \(seglib\.models\.unet\."
    ):
        load_model(tmp_path / "whole.pt")


def test_a_checkpoint_whose_model_code_changed_says_so_in_a_line(tmp_path):
    model = build_model("unet", base_channels=4)
    state = model.state_dict()  # as if UNet's code had changed since the run: a kernel, a layer each way
    state["inc.0.weight"] = torch.zeros(4, 3, 5, 5)
    state["extra.weight"] = torch.zeros(1)
    del state["outc.bias"]
    run = tmp_path / "run"
    run.mkdir()
    torch.save(
        {"format": FORMAT, "model_spec": model_spec(model, "unet", {"base_channels": 4}), "model": state},
        run / "best.pt",
    )
    record_start(run, {"seglib_commit": "abc1234"})
    with pytest.raises(CheckpointError) as e:
        load_model(run / "best.pt")
    assert re.search(
        r"best\.pt: its weights do not fit model 'unet' .* as this seglib builds it: 1 weight of another shape \(first "
        r"inc\.0\.weight: \[4, 3, 5, 5\] saved, \[4, 3, 3, 3\] built\); 1 missing from the file \(outc\.bias\); "
        r"1 not in the model \(extra\.weight\)\. .*seglib abc1234 trained it: .*git checkout abc1234",
        str(e.value),
    )
    assert str(e.value).count("\n") == 0  # not torch's line per weight


def test_a_misfit_checkpoint_of_a_run_without_its_seglib_commit_says_what_to_do(tmp_path):
    """No environment.json beside it: no "git checkout unknown" to follow."""
    model = build_model("unet", base_channels=4)
    state = model.state_dict()
    del state["outc.bias"]
    spec = model_spec(model, "unet", {"base_channels": 4})
    torch.save({"format": FORMAT, "model_spec": spec, "model": state}, tmp_path / "best.pt")
    with pytest.raises(
        CheckpointError,
        match=r"1 missing from the file \(outc\.bias\)\. The model's code has changed since the run: "
        r"evaluate it with the seglib that trained it, or train again$",
    ):
        load_model(tmp_path / "best.pt")


class _RunsCode:
    """What a hostile checkpoint holds: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_unread(tmp_path):
    model = build_model("unet", base_channels=4)
    save_checkpoint(
        tmp_path / "bad.pt",
        model,
        model_spec(model, "unet", {"base_channels": 4}),
        payload=_RunsCode(tmp_path / "ran"),
    )
    with pytest.raises(
        CheckpointError, match=r"bad\.pt .*unpickle Python objects \((posix|os)\.system\).*run any code"
    ):
        load_model(tmp_path / "bad.pt")
    assert not (tmp_path / "ran").exists()
    torch.load(tmp_path / "bad.pt", weights_only=False)  # the file does run code when unpickled
    assert (tmp_path / "ran").exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "none.pt")


# --- evaluation and prediction ---------------------------------------------------------------------------
class Constant(nn.Module):
    """Predicts pet everywhere: its Dice on an image is 2|T| / (|T| + H*W), known exactly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, *x.shape[-2:]), 10.0)


def test_scoring_a_model_leaves_its_mode_and_memory_format_as_they_were(synthetic_root):
    """A user who scores the model mid-training goes on training: in train mode, in its own layout."""
    ds = OxfordPetDataset(synthetic_root, "test", image_size=64, limit=3)
    model = build_model("unet", base_channels=4).train()
    strides = [p.stride() for p in model.parameters()]
    table = evaluate(model, ds, device="cpu", channels_last=True, progress=False)
    assert len(table) == 3 and model.training and [p.stride() for p in model.parameters()] == strides
    mask = predict(model, ds.load_image(0), image_size=64, device="cpu")
    assert mask.shape == ds.load_mask(0).shape and model.training
    model.eval()  # and one already in eval mode stays there
    evaluate(model, ds, device="cpu", progress=False)
    assert not model.training


def test_evaluate_scores_at_original_resolution(synthetic_root):
    ds = OxfordPetDataset(synthetic_root, "test", image_size=64, limit=7)
    df = evaluate(Constant(), ds, device="cpu", batch_size=3, channels_last=False, progress=False)
    assert len(df) == 7 and df.name.tolist() == ds.names
    for i, row in df.iterrows():
        truth = ds.load_mask(i)
        h, w = truth.shape
        assert (row.height, row.width) == (h, w)
        t = float(truth.sum())
        assert row.dice == pytest.approx(2 * t / (t + h * w), rel=1e-6)
        assert row.iou == pytest.approx(t / (h * w), rel=1e-6)
        assert row.fg_fraction == pytest.approx(t / (h * w))
        small = ds[i]["mask"]
        assert row.dice_model == pytest.approx(
            2 * small.sum().item() / (small.sum().item() + 64 * 64), rel=1e-6
        )
    table = summarize(df)
    assert (table.dice_low <= table.dice_mean).all() and (table.dice_mean <= table.dice_high).all()
    for res, dice, iou in (("original", df.dice, df.iou), ("model", df.dice_model, df.iou_model)):
        row = table.loc[res]
        assert row.images == 7 and (row.dice_low, row.dice_high) == mean_interval(dice)
        assert [row.dice_mean, row.dice_median, row.dice_min] == [dice.mean(), dice.median(), dice.min()]
        assert [row.iou_mean, row.iou_median, row.iou_min] == [iou.mean(), iou.median(), iou.min()]
    assert not np.isclose(df.dice.mean(), df.dice_model.mean())  # the two rows are told apart
    for res, (tp, fp, fn) in (("original", ("tp", "fp", "fn")), ("model", MODEL_COUNTS)):
        tp, fp, fn = df[tp].sum(), df[fp].sum(), df[fn].sum()
        assert table.loc[res, "dice_dataset"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert table.loc[res, "iou_dataset"] == pytest.approx(tp / (tp + fp + fn))
    # The constant model predicts every pixel pet: no false negatives, the truth's pixels as tp.
    small = sum(ds[i]["mask"].sum().item() for i in range(len(ds)))
    assert (df.fn_model.sum(), df.tp_model.sum()) == (0, small)
    assert df.fp_model.sum() == 7 * 64 * 64 - small
    old = summarize(df.drop(columns=list(MODEL_COUNTS)))  # a table written before the counts were kept
    assert old.loc["model", ["dice_dataset", "iou_dataset"]].isna().all()
    assert old.loc["original"].equals(table.loc["original"])


@pytest.mark.slow
def test_evaluate_a_checkpoint_and_predict(tiny_config, synthetic_root):
    result = fit(tiny_config(epochs=1))
    ds = OxfordPetDataset(synthetic_root, "test", image_size=32, limit=4)
    df = evaluate(result.best_checkpoint, ds, device="cpu", progress=False)
    assert df[["dice", "iou", "dice_model", "iou_model"]].apply(lambda c: c.between(0, 1)).all().all()
    image = ds.load_image(0)
    mask = predict(result.model, image, image_size=32)
    assert mask.shape == image.shape[:2] and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert np.array_equal(
        predict(Constant(), ds.image_path(ds.names[0]), 32), np.ones(image.shape[:2], np.uint8)
    )


def test_config_json_is_plain(tiny_config, tmp_path):
    cfg = tiny_config()
    cfg.save(tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())["model_kwargs"] == {"base_channels": 4}


# --- recipe levers ------------------------------------------------------------------------------------
def test_soft_dice_loss_known_values():
    from seglib.engine.losses import soft_dice_loss

    target = torch.ones(1, 1, 2, 2)
    assert soft_dice_loss(torch.full((1, 1, 2, 2), 30.0), target, smooth=0.0).item() == pytest.approx(
        0.0, abs=1e-6
    )
    # p = 0.5 everywhere on an all-pet image: soft Dice 2 * 2 / (2 + 4) = 2/3
    assert soft_dice_loss(torch.zeros(1, 1, 2, 2), target, smooth=0.0).item() == pytest.approx(1 / 3)
    ignored = torch.tensor([[[[1.0, 255.0]]]])
    for border_logit in (-30.0, 30.0):  # an ignored pixel counts for neither side, whatever it predicts
        loss = soft_dice_loss(torch.tensor([[[[30.0, border_logit]]]]), ignored, smooth=0.0)
        assert loss.item() == pytest.approx(0, abs=1e-6)
    # per image, then the mean: one perfect image and one all wrong give 0.5 (over the batch's pixels: 2/3)
    two = soft_dice_loss(
        torch.tensor([[[[30.0, 30.0]]], [[[-30.0, -30.0]]]]), torch.ones(2, 1, 1, 2), smooth=0
    )
    assert two.item() == pytest.approx(0.5, abs=1e-6)


def test_bce_loss_is_torchs_over_the_pixels_not_ignored():
    from seglib.engine.losses import bce_loss

    torch.manual_seed(0)
    logits, target = torch.randn(2, 1, 4, 4), (torch.rand(2, 1, 4, 4) > 0.5).float()
    assert bce_loss(logits, target).item() == pytest.approx(nn.BCEWithLogitsLoss()(logits, target).item())
    ignored = target.clone()
    ignored[:, :, 0] = 255  # the border band: a large logit there must cost nothing
    logits[:, :, 0] = 50.0
    valid = ignored != 255
    expected = nn.BCEWithLogitsLoss()(logits[valid], target[valid])
    assert bce_loss(logits, ignored).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match=r"unknown loss 'dice'; choose one of \['bce', 'bce_dice'\]"):
        TrainConfig(loss="dice")


@pytest.mark.slow
def test_bce_dice_training_runs_and_differs(tiny_config):
    a = fit(tiny_config(epochs=1))
    b = fit(tiny_config(epochs=1, loss="bce_dice"))
    assert b.history.train_loss.iloc[0] > a.history.train_loss.iloc[0]  # the Dice term adds to the loss


def test_tta_is_flip_symmetric():
    from seglib.engine.tta import forward_tta

    model = build_model("unet", base_channels=4).eval()
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        plain, tta, tta_mirror = model(x), forward_tta(model, x, True), forward_tta(model, x.flip(-1), True)
    assert torch.allclose(tta, tta_mirror.flip(-1), atol=1e-5)  # TTA output is equivariant to the flip
    assert not torch.allclose(plain, tta, atol=1e-5)  # the model alone is not, so TTA did something


# --- precision ---------------------------------------------------------------------------------------
def test_autocast_computes_in_bf16_on_a_cpu_only_when_asked():
    from seglib.engine.runtime import autocast, default_amp, native_bf16

    cpu = torch.device("cpu")
    conv, x = nn.Conv2d(3, 4, 3), torch.randn(1, 3, 8, 8)
    with autocast(cpu, True):
        assert conv(x).dtype == torch.bfloat16
    with autocast(cpu, False):
        assert conv(x).dtype == torch.float32
    # The default follows the CPU: bf16 where it is native (AVX512-BF16 / AMX), fp32 where emulated.
    assert default_amp(cpu) == native_bf16(cpu)
    assert isinstance(native_bf16(cpu), bool) and not native_bf16(torch.device("meta"))


@pytest.mark.parametrize("major, dtype", [(7, torch.float16), (8, torch.bfloat16)])
def test_a_gpu_before_ampere_trains_in_fp16_though_torch_says_it_holds_bf16(monkeypatch, major, dtype):
    """A T4 (Colab's GPU, compute capability 7.5) as torch sees it: bf16 tensors can be made there."""
    from types import SimpleNamespace

    from seglib.engine.runtime import amp_dtype, native_bf16, precision_name

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(major=major, minor=5))
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda d: True)
    assert torch.cuda.is_bf16_supported()  # what a T4 answers too
    gpu = torch.device("cuda")
    assert (native_bf16(gpu), amp_dtype(gpu)) == (major >= 8, dtype)
    assert precision_name(gpu, True) == f"{str(dtype).removeprefix('torch.')} autocast"


def test_native_bf16_agrees_with_the_cpu_flags():
    """The detection goes through private torch functions: if one is renamed, this says so on a bf16 CPU."""
    from pathlib import Path

    from seglib.engine.runtime import native_bf16

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to read the CPU's flags from")
    flags = set(next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split())
    assert native_bf16(torch.device("cpu")) == bool(flags & {"avx512_bf16", "amx_tile"})


@pytest.mark.slow
def test_bf16_training_on_a_cpu_is_reproducible_and_differs_from_fp32(tiny_config):
    a = fit(tiny_config(epochs=1, amp=True))
    b = fit(tiny_config(epochs=1, amp=True))
    c = fit(tiny_config(epochs=1, amp=False))
    assert a.history.train_loss.tolist() == b.history.train_loss.tolist()
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True))
    assert a.history.train_loss.iloc[0] != c.history.train_loss.iloc[0]  # bf16 really was used
    assert abs(a.history.train_loss.iloc[0] - c.history.train_loss.iloc[0]) < 0.05  # and stays close to fp32


def test_list_parameters_take_text_one_number_or_a_list():
    """papermill's -p passes `budgets 12` as a number: notebook 06 (and 04's tta_scales) split text only."""
    assert number_list("1, 2,3", "budgets") == (1.0, 2.0, 3.0)
    assert number_list(12, "budgets") == (12.0,) and number_list(1.2, "tta_scales") == (1.2,)
    assert number_list([0.5, 1], "budgets") == (0.5, 1.0) and number_list("", "tta_scales") == ()
    for bad in ("1,x", True, "inf"):
        with pytest.raises(ValueError, match=r"budgets=.*: give numbers separated by commas"):
            number_list(bad, "budgets")


def test_a_run_with_no_training_step_says_why_before_it_starts(tiny_config, tmp_path):
    # one image in batches of 4: its last batch of one is dropped, and the run failed after its first epoch
    # with "none of the training images could be read"
    with pytest.raises(ValueError, match=r"1 training image\(s\) in batches of 4 make no training step"):
        fit(tiny_config(train_limit=1))
    assert not (tmp_path / "runs").exists()  # refused before any run folder is made


def test_a_loaded_config_never_overwrites_the_run_it_came_from(tmp_path):
    """fit(TrainConfig.load(run/config.json)) of a run saved with overwrite=True removed that run."""
    from seglib.engine import TrainConfig

    TrainConfig(overwrite=True, run_name="w").save(tmp_path / "config.json")
    loaded = TrainConfig.load(tmp_path / "config.json")
    assert (loaded.overwrite, loaded.run_name) == (False, "w")


def test_a_ctrl_c_in_fits_set_up_says_what_was_saved(tiny_config, monkeypatch):
    """Stopped while it read the data (or probed, or cached) fit ended in a bare KeyboardInterrupt at the
    bottom of a traceback through torch, saying nothing of what was saved or what to do."""

    def stopped(cfg, *_):
        raise KeyboardInterrupt  # the moment of a Ctrl-C: no run gets there reliably

    monkeypatch.setattr("seglib.engine.train.make_datasets", stopped)
    with pytest.raises(TrainingInterrupted, match="stopped before it saved where it stood") as e:
        fit(tiny_config())
    assert e.value.__suppress_context__


def test_a_run_has_ended_when_its_epochs_are_done_or_its_patience_spent_since_its_best():
    """What a study and the workspace ask of a run's history: its best epoch is the first of its highest
    val Dice, counted from 1, and patience counts the epochs after it."""
    from seglib.engine.runs import run_ended

    cfg = TrainConfig(epochs=10, patience=2)
    history = pd.DataFrame({"epoch": [1, 2, 3, 4], "val_dice": [0.1, 0.5, 0.3, 0.5]})
    assert not run_ended(history[:3], cfg)  # one epoch after the best (2)
    assert run_ended(history, cfg)  # two after it: a tie later is no better
    assert not run_ended(history, TrainConfig(epochs=10, patience=3))
    assert run_ended(history, TrainConfig(epochs=4)) and not run_ended(history, TrainConfig(epochs=5))


def test_patience_stops_a_run_that_no_longer_betters_and_a_resume_stops_alike(
    tiny_config, loss_at_step, tmp_path, capsys
):
    """lr 1.0 wrecks the tiny UNet after its first epochs: its val Dice stops bettering its best."""
    cfg = dict(epochs=12, lr=1.0, patience=2)
    whole = fit(tiny_config(output_dir=tmp_path / "a", **cfg))
    h = whole.history
    assert len(h) == whole.best_epoch + 2 < 12  # stopped two epochs after its best
    assert (h.val_dice.iloc[whole.best_epoch :] <= whole.best_val_dice).all()
    with pytest.raises(TrainingInterrupted):
        fit(tiny_config(output_dir=tmp_path / "b", **cfg), loss_fn=loss_at_step("ctrl_c", 4))
    resumed = fit(tiny_config(output_dir=tmp_path / "b", **cfg), resume=True)
    cols = [c for c in h.columns if c != "seconds"]
    pd.testing.assert_frame_equal(resumed.history[cols], h[cols], check_exact=True)
    # a stopped run is a finished one: a study does not train it again, nor a resume record a new start
    from seglib.study.runs import is_finished

    assert is_finished(whole.run_dir) and is_finished(resumed.run_dir)
    starts = len(read_environment(resumed.run_dir))
    capsys.readouterr()
    fit(tiny_config(output_dir=tmp_path / "b", **cfg), resume=True)
    assert len(read_environment(resumed.run_dir)) == starts
    said = capsys.readouterr().out  # not "resuming ... at the start of epoch", then nothing trained
    assert (
        f"{resumed.run_dir} stopped by its patience (2) after epoch {len(h)} of 12: nothing to resume" in said
    )
    assert "resuming" not in said and "parameters) on" not in said  # nor the banner of a training
    longer = fit(tiny_config(output_dir=tmp_path / "b", **{**cfg, "patience": 4}), resume=True)
    assert len(longer.history) == min(12, longer.best_epoch + 4) > len(h)  # more patience: it goes on
    assert json.loads((longer.run_dir / "config.json").read_text())["patience"] == 4


class _StuckAfterTheFirst(torch.utils.data.Dataset):
    """A sample that never comes after the first: a worker stuck reading (a hung network file system)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        import time

        if i > 0:
            time.sleep(600)
        return {"x": torch.zeros(1)}


def test_an_interrupted_evaluate_leaves_no_loader_workers_behind(synthetic_root):
    """Ctrl-C in a notebook's evaluate: the kernel keeps the traceback (sys.last_traceback), whose frames
    held the loader and its persistent workers, each a copy of the kernel, until the next error."""
    import multiprocessing

    ds = OxfordPetDataset(synthetic_root, "test", image_size=32, limit=8)
    net = build_model("unet", base_channels=4).eval()
    calls = []

    def interrupt_the_second(module, args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt

    net.register_forward_pre_hook(interrupt_the_second)
    before = set(multiprocessing.active_children())
    with pytest.raises(KeyboardInterrupt) as stopped:
        evaluate(net, ds, batch_size=2, progress=False, num_workers=1)
    assert stopped.tb is not None  # held, as a kernel holds it
    assert set(multiprocessing.active_children()) == before


def test_a_worker_killed_during_evaluate_is_said_with_what_to_do(synthetic_root):
    """As in fit: torch's words whichever of its reports came first (the batch's reset connection, or its
    SIGCHLD handler's), then how the worker ended and what to do."""
    import multiprocessing
    import signal

    ds = OxfordPetDataset(synthetic_root, "test", image_size=32, limit=20)
    net = build_model("unet", base_channels=4).eval()
    calls = []

    def kill_the_worker_at_the_second(module, args):  # its prefetched batches run out after a few more
        calls.append(args)
        if len(calls) == 2:
            (worker,) = set(multiprocessing.active_children()) - before
            os.kill(worker.pid, signal.SIGKILL)

    net.register_forward_pre_hook(kill_the_worker_at_the_second)
    before = set(multiprocessing.active_children())
    with pytest.raises(RuntimeError) as killed:
        evaluate(net, ds, batch_size=2, progress=False, num_workers=1)
    assert re.match(
        r"DataLoader worker \(pid \d+\) is killed by signal: Killed\. evaluate: A loader worker was killed "
        r"from outside, most often by the system for want of memory \(fewer num_workers need less\); run it again",
        str(killed.value),
    ), str(killed.value)
    assert set(multiprocessing.active_children()) == before


def test_stopping_the_loaders_ends_a_stuck_worker_that_ignores_sigterm(monkeypatch):
    """Under the command line's train the workers ignore SIGTERM (a job's SIGTERM reaches them too), so
    DataLoader's shutdown, which ends a worker that does not stop in time with SIGTERM, left a stuck one
    running; the process then waited for it at exit (multiprocessing joins its children) until SIGKILL."""
    import time

    from seglib.engine import loaders
    from seglib.engine.workers import stop_workers

    # DataLoader waits this long for the worker to stop, then as long again after its SIGTERM: 5 s each
    monkeypatch.setattr(torch.utils.data._utils, "MP_STATUS_CHECK_INTERVAL", 0.5)

    loader = torch.utils.data.DataLoader(
        _StuckAfterTheFirst(),
        batch_size=1,
        num_workers=1,
        persistent_workers=True,
        worker_init_fn=loaders.leave_sigterm_to_the_main_process,
    )
    it = iter(loader)
    next(it)
    workers = list(it._workers)
    time.sleep(1)  # the worker is in the sample that never comes
    try:
        stop_workers((loader,))
        assert not any(w.is_alive() for w in workers)
    finally:
        for w in workers:
            w.kill()

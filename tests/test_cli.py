"""The command line, run as a user runs it: python -m seglib train | evaluate | predict."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from seglib.cli import NOT_OPTIONS, build_parser, field_comments, main, train_config, train_options
from seglib.data import BORDER_MODES, DATASETS, SPLITS, FolderDataset, OxfordPetDataset, make_synthetic_folder
from seglib.engine import SCHEDULERS, TrainConfig, config_from_profile
from seglib.engine.config import CHOICES, MAX_IMAGE_SIZE, ON_CORRUPT
from seglib.engine.loaders import checkpoint_split
from seglib.engine.losses import LOSSES
from seglib.models import MODELS


def seglib(*args, cwd):
    proc = subprocess.run(
        [sys.executable, "-m", "seglib", *map(str, args)], cwd=cwd, capture_output=True, text=True
    )
    return proc


@pytest.mark.slow
def test_train_evaluate_predict(synthetic_root, tmp_path, monkeypatch):
    p = seglib(
        "train",
        "--data_path",
        synthetic_root,
        "--model",
        "unet",
        "--base_channels",
        "4",
        "--epochs",
        2,
        "--image_size",
        32,
        "--batch_size",
        4,
        "--train_limit",
        12,
        "--val_limit",
        6,
        "--lr",
        1e-3,
        "--scheduler",
        "cosine",
        "--output_dir",
        tmp_path / "runs",
        "--run_name",
        "cli",
        "--recipe",
        "recommended",
        "--ema_decay",
        0.9,
        "--no-tta",
        "--checkpoint_every",
        1,
        "--no-amp",
        "--copy_paste",
        0.5,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    run = tmp_path / "runs" / "cli"
    assert "best val Dice" in p.stdout and (run / "history.png").is_file()
    assert pd.read_csv(run / "history.csv").shape[0] == 2
    cfg = json.loads((run / "config.json").read_text())  # the recipe, then the flags on top
    assert (
        cfg["loss"],
        cfg["pct_start"],
        cfg["scheduler"],
        cfg["ema_decay"],
        cfg["tta"],
        cfg["amp"],
        cfg["copy_paste"],
    ) == ("bce_dice", 0.3, "cosine", 0.9, False, False, 0.5)
    assert sorted(p.name for p in (run / "epochs").iterdir()) == ["epoch_001.pt", "epoch_002.pt"]
    # Besides the first train, evaluate and predict (new processes, as users run them), the commands run
    # in this process: each command's own start costs seconds
    monkeypatch.chdir(tmp_path)
    main(["train", "--config", str(run)])  # the same run again, from its folder
    first, again = (
        pd.read_csv(r / "history.csv").drop(columns="seconds") for r in (run, run.with_name("cli-2"))
    )
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    saved = json.loads((run / "config.json").read_text()) | {"overwrite": True}  # a run that replaced one
    (tmp_path / "over.json").write_text(json.dumps(saved))
    main(["train", "--config", str(tmp_path / "over.json"), "--epochs", "1"])
    assert (run / "best.pt").is_file() and len(pd.read_csv(run.with_name("cli-3") / "history.csv")) == 1

    p = seglib(
        "evaluate",
        "--model_path",
        run / "best.pt",
        "--data_path",
        synthetic_root,
        "--limit",
        5,
        "--num_figures",
        2,
        "--output_dir",
        tmp_path / "eval",
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert pd.read_csv(tmp_path / "eval" / "per_image.csv").shape[0] == 5
    assert {"original", "model"} == set(pd.read_csv(tmp_path / "eval" / "summary.csv").resolution)
    assert (tmp_path / "eval" / "dice_distribution.png").is_file()
    assert len(list((tmp_path / "eval" / "worst").glob("*.png"))) == 2

    p = seglib(
        "predict",
        "--model_path",
        run / "best.pt",
        "--data_path",
        synthetic_root,
        "--limit",
        3,
        "--output_dir",
        tmp_path / "pred",
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "pred").glob("*_mask.png"))) == 3  # and an overlay, a CSV row, a figure each
    assert len(list((tmp_path / "pred" / "figures").glob("*.png"))) == 3
    assert pd.read_csv(tmp_path / "pred" / "predictions.csv").dice.between(0, 1).all()

    own = tmp_path / "my_photos"
    own.mkdir()
    for f in sorted((synthetic_root / "images").glob("*.jpg"))[:3]:
        shutil.copy(f, own / f.name)
    main(
        [
            "predict",
            "--model_path",
            str(run / "best.pt"),
            "--input",
            str(own),
            "--output_dir",
            str(tmp_path / "own"),
        ]
    )
    assert len(list((tmp_path / "own").glob("*_mask.png"))) == 3
    assert len(list((tmp_path / "own").glob("*_overlay.png"))) == 3
    assert len(pd.read_csv(tmp_path / "own" / "predictions.csv")) == 3

    # Without --data_path, from another folder: the run's own data (it scored a new synthetic set there).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "eval_run_data"
    monkeypatch.chdir(elsewhere)
    main(["evaluate", "--model_path", str(run / "best.pt"), "--limit", "4", "--output_dir", str(out)])
    names = OxfordPetDataset(synthetic_root, "test").names[:4]
    assert list(pd.read_csv(out / "per_image.csv").name) == names and not list(elsewhere.iterdir())
    with pytest.raises(SystemExit, match="--data_path nowhere does not exist"):  # its words, on stderr
        main(["evaluate", "--model_path", str(run / "best.pt"), "--data_path", "nowhere"])
    (elsewhere / "notes.txt").write_text("mine")  # an --output_dir that cannot be: said before the scoring
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--model_path", str(run / "best.pt"), "--output_dir", "notes.txt/eval"])
    err = str(e.value.code)  # what Python prints on stderr as it exits
    assert (
        "seglib evaluate: error: --output_dir notes.txt/eval cannot hold the results (Not a directory)" in err
    )
    assert "(nothing was scored)" in err and sorted(p.name for p in elsewhere.iterdir()) == ["notes.txt"]
    (elsewhere / "notes.txt").unlink()
    # Without --output_dir: a folder of the run and split (notebook 04's summary.csv was replaced)
    main(["evaluate", "--model_path", str(run / "best.pt"), "--limit", "2"])
    summary = pd.read_csv(elsewhere / "results" / "evaluation" / f"{run.name}-test" / "summary.csv")
    assert set(summary.checkpoint) == {str((run / "best.pt").resolve())}  # the table says what it scored
    main(["evaluate", "--model_path", str(run / "last.pt"), "--limit", "2", "--num_figures", "0"])
    # last.pt beside best.pt's tables, not over them
    summary = pd.read_csv(elsewhere / "results" / "evaluation" / f"{run.name}-last-test" / "summary.csv")
    assert set(summary.checkpoint) == {str((run / "last.pt").resolve())}


@pytest.mark.slow
def test_train_and_evaluate_on_a_folder(tmp_path):
    root = make_synthetic_folder(tmp_path / "mine", n=20, seed=0)
    args = [
        "--profile",
        "tiny",
        "--dataset",
        "folder",
        "--data_path",
        root,
        "--output_dir",
        tmp_path / "runs",
    ]
    p = seglib("train", *args, "--run_name", "folder", "--mask_values", "", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    run = tmp_path / "runs" / "folder"
    assert "seeded split (seed 0)" in p.stdout
    assert (run / "splits" / "test.txt").read_text().split() == FolderDataset(root, "test").names
    p = seglib(
        "evaluate", "--model_path", run / "best.pt", "--dataset", "folder", "--data_path", root,
        "--output_dir", tmp_path / "eval", cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    per_image = pd.read_csv(tmp_path / "eval" / "per_image.csv")
    assert list(per_image.name) == FolderDataset(root, "test").names  # the run's own test split


@pytest.mark.slow
def test_train_config_from_another_folder_trains_beside_the_run_on_its_data(synthetic_root, tmp_path):
    """From another folder, --config of a run with relative paths trained there, on the demo set made
    there in place of the run's data; so did --resume, and --config of a run whose results folder is a
    link (its relative paths were taken from where the link points)."""
    (tmp_path / "data").symlink_to(synthetic_root)
    (tmp_path / "other").mkdir()
    (tmp_path / "store").mkdir()
    (tmp_path / "rel").symlink_to(tmp_path / "store")  # the results on another disk
    p = seglib("train", "--profile", "tiny", "--data_path", "data", "--output_dir", "rel/runs", "--run_name",
               "q", "--no-progress", cwd=tmp_path)  # fmt: skip
    assert p.returncode == 0, p.stderr
    for how in (["--resume", "../rel/runs/q"], ["--config", "../rel/runs/q"]):  # resume: it trains nothing
        p = seglib("train", *how, "--no-progress", cwd=tmp_path / "other")
        assert p.returncode == 0, p.stderr
        assert not list((tmp_path / "other").iterdir())  # no demo set made there in place of the data
        said = (
            "has finished its 2 epochs"
            if how[0] == "--resume"
            else f"on oxford-pet data ({tmp_path / 'data'})"
        )
        assert said in p.stdout, p.stdout
    runs = tmp_path / "rel" / "runs"
    first, again = (pd.read_csv(runs / r / "history.csv").drop(columns="seconds") for r in ("q", "q-2"))
    pd.testing.assert_frame_equal(first, again, check_exact=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--epochs", "0"], "epochs must be a positive integer, got 0"),
        (["train", "--config", "nowhere"], "--config nowhere: cannot read /"),
        (["train", "--config", ".", "--profile", "quick"], "--config takes a run's settings whole"),
        (["train", "--config", ".", "--recipe", "original"], "--config takes a run's settings whole"),
        (["train", "--model", "segnet"], "invalid choice: 'segnet'"),
        (
            ["train", "--dataset", "oxford-pet", "--data_path", "nowhere"],
            "data root 'nowhere' does not exist",
        ),
        (["evaluate", "--model_path", "none.pt"], "none.pt' does not exist"),
        (["train", "--data_path", "nowhere"], "--data_path nowhere does not exist"),
        # a folder without data: "auto" trained and scored the synthetic demo set, made in the working folder
        (["train", "--data_path", "."], "--data_path . holds no data set: neither the Oxford-IIIT Pet's"),
        (["evaluate", "--model_path", "m.pt", "--data_path", "."], "--data_path . holds no data set"),
        (
            ["evaluate", "--model_path", "m.pt", "--image_size", "100000"],
            "--image_size: 100000 is above 4096",
        ),
        # torch wrote an opset-18 file for these, after a traceback, and exited 0
        (
            ["export", "--model_path", "m.pt", "--opset", "13"],
            "opset 13: the exporter writes ONNX opsets 18 to",
        ),
        (
            ["export", "--model_path", "m.pt", "--format", "pt2", "--opset", "18"],
            "opset 18 is an ONNX setting",
        ),
        (
            ["train", "--scheduler", "step", "--gamma", "-1"],
            "gamma (the step schedulers' decay factor) must be",
        ),
        (["train", "--scheduler", "cosine", "--min_lr", "1"], "min_lr (cosine's floor) must be in [0, lr="),
        (["train", "--pct_start", "2"], "pct_start (onecycle's warm-up share) must be in (0, 1)"),
        (["train", "--seed", "-1"], "seed must be an integer >= 0, got -1"),
        (["train", "--image_size", "1000000"], "image_size must be from 32 px"),
        (["train", "--model_kwargs", '{"foo": 1}'], "model_kwargs ['foo'] are not options of model 'unet'"),
        (["evaluate", "--model_path", "m.pt", "--image_size", "7"], "--image_size: 7 is below 32"),
        (["evaluate", "--model_path", "m.pt", "--limit", "-2"], "--limit: -2 is below 1"),
        (["predict", "--model_path", "m.pt", "--threshold", "2"], "--threshold: 2.0 is not in (0, 1)"),
        (["predict", "--model_path", "m.pt", "--threshold", "0"], "--threshold: 0.0 is not in (0, 1)"),
        (["evaluate", "--model_path", "m.pt", "--threshold", "1"], "--threshold: 1.0 is not in (0, 1)"),
        (["evaluate", "--model_path", ".", "--split", "test"], "'.' is a folder; pass a checkpoint in it"),
        (["train", "--ema_decay", "1.5"], "ema_decay must be 0 (off) or in (0, 1)"),
        (["train", "--recipe", "best"], "invalid choice: 'best'"),
        (["train", "--loss", "dice"], "invalid choice: 'dice'"),
        (["train", "--milestones", "3,x"], "expected integers separated by commas"),
        (["train", "--model_kwargs", "[16]"], "expected a JSON object"),
        (["train", "--milestones", "6,3"], "milestones must be increasing epochs"),
        (["train", "--base_channels", "0"], "base_channels must be a positive integer, e.g. 16; got 0"),
        (["evaluate", "--model_path", "m.pt", "--split", "all"], "invalid choice: 'all'"),
        (["predict", "--model_path", "m.pt", "--split", "all"], "invalid choice: 'all'"),
        # "." emptied --output_dir with --overwrite, "../escaped" wrote beside it, "a/b": a bare Errno 2
        (
            ["train", "--profile", "tiny", "--run_name", ".", "--overwrite"],
            "seglib train: error: run_name '.' is no folder of its own: it must be one plain folder name",
        ),
        (["train", "--profile", "tiny", "--run_name", "../escaped"], "has a folder separator in it"),
        (["train", "--profile", "tiny", "--run_name", "unet/lr=1e-3"], "e.g. 'unet-lr=1e-3'"),
    ],
)
def test_bad_arguments_are_named(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code != 0
    assert message in capsys.readouterr().err + str(e.value.code)
    assert not list(tmp_path.iterdir())  # nothing made: no demo set, no output


def test_an_unknown_option_is_named_with_its_commands_usage_and_every_refusal_with_its_command(
    tmp_path, monkeypatch, capsys
):
    """`train --bogus` printed the top-level usage (`python -m seglib [-h] {train,...}`), which shows none of
    train's options; `predict --input nothere.jpg` said its refusal without the command's name."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["train", "--epochs", "2", "--bogus"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "train: error: unrecognized arguments: --bogus" in err
    assert "usage: python -m seglib train [-h]" in err and "--epochs" in err
    with pytest.raises(SystemExit) as e:
        main(["train", "--resume_or_start"])
    assert str(e.value.code).startswith("seglib train: error: --resume_or_start takes --run_name")
    assert not list(tmp_path.glob("*/"))  # nothing made


def test_a_run_name_of_dot_leaves_the_other_runs_of_output_dir(synthetic_root, tmp_path, capsys):
    """train --run_name . --overwrite emptied --output_dir (its other runs, the user's files) and trained
    into it."""
    runs = tmp_path / "runs9"
    (runs / "earlier").mkdir(parents=True)
    (runs / "earlier" / "best.pt").write_bytes(b"weights")
    (runs / "notes.txt").write_text("mine")
    args = ["train", "--profile", "tiny", "--data_path", str(synthetic_root), "--output_dir", str(runs),
            "--epochs", "1", "--device", "cpu", "--no-progress", "--overwrite", "--run_name"]  # fmt: skip
    for name in (".", str(tmp_path / "abs"), "../escaped"):
        with pytest.raises(
            SystemExit, match=r"error: run_name '.*' (is no folder of its own|has a folder sep)"
        ):
            main([*args, name])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs9"]  # nothing escaped --output_dir
    assert sorted(p.name for p in runs.rglob("*")) == ["best.pt", "earlier", "notes.txt"]


def test_a_mask_hint_names_the_option_on_the_command_line(tmp_path, monkeypatch, capsys):
    """The data's hint says mask_values=">127" in Python; on the command line it names the option."""
    y, x = np.mgrid[:48, :64]
    soft = np.clip((15 - np.hypot(y - 24, x - 32)) * 85 + 128, 0, 255).astype(np.uint8)  # dozens of levels
    for sub in ("images", "masks"):
        (tmp_path / "soft" / sub).mkdir(parents=True)
    for i in range(10):
        Image.fromarray(np.full((48, 64, 3), 25 * i, np.uint8)).save(
            tmp_path / "soft" / "images" / f"p{i}.png"
        )
        Image.fromarray(soft).save(tmp_path / "soft" / "masks" / f"p{i}.png")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(
            [
                "train",
                "--profile",
                "tiny",
                "--dataset",
                "folder",
                "--data_path",
                "soft",
                "--output_dir",
                "runs",
            ]
        )
    message = str(e.value.code)
    assert "p0.png: " in message and "look like a soft edge" in message
    assert 'pass --mask_values ">127" (the brighter half' in message and "mask_values=" not in message


def test_a_ctrl_c_before_trainings_first_save_says_what_to_do(tmp_path, monkeypatch, capsys):
    """It said "seglib train: interrupted. " and no more (a Ctrl-C while the data was read, or a second one
    while last.pt was written)."""

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("seglib.cli.train.fit", stopped)  # the moment of a Ctrl-C: no run gets there reliably
    with pytest.raises(SystemExit) as e:
        main(["train", "--profile", "tiny", "--dataset", "synthetic", "--output_dir", str(tmp_path)])
    assert e.value.code == 130
    assert "interrupted. It stopped before saving where it stood: resume from the run folder's last.pt" in (
        capsys.readouterr().err
    )


@pytest.mark.slow
def test_sigterm_saves_says_how_to_resume_and_the_resumed_run_ends(synthetic_root, tmp_path):
    """A batch scheduler's time limit (SLURM: SIGTERM, some 30 s, then SIGKILL) killed a training at once,
    with no word, last.pt as old as its last epoch and a stale .training mark; now it stops as at Ctrl-C.
    The scheduler signals every process of the job: a loader worker killed by it failed the run."""
    import signal

    # a job of its own (a session): the signal reaches its loader worker too
    proc, history = _train_past_its_first_epoch(
        synthetic_root, tmp_path, "--num_workers", 1, start_new_session=True
    )
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "seglib train: stopped by SIGTERM" in err and "training stopped in epoch" in err
    command = re.search(r"`python -m seglib (train --resume \S+)`", err)
    assert command is not None, err
    assert not (tmp_path / "r" / ".training").exists()
    done = pd.read_csv(history).epoch.tolist()
    assert done == list(range(1, len(done) + 1)) and len(done) < 40
    p = seglib(*command[1].split(), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert pd.read_csv(history).epoch.tolist() == list(range(1, 41))


@pytest.mark.slow
def test_resume_or_start_is_one_command_for_a_requeued_job(synthetic_root, tmp_path):
    """A batch scheduler that requeues a job runs its command again: a run already there made it start anew
    in NAME-2. With --resume_or_start the first run starts it, the same command again resumes it (here:
    finished, so it trains nothing), and no NAME-2 is made."""
    args = ["train", "--data_path", synthetic_root, "--base_channels", "4", "--epochs", 2, "--image_size", 32]
    args += [
        "--batch_size",
        4,
        "--train_limit",
        8,
        "--val_limit",
        4,
        "--output_dir",
        tmp_path,
        "--run_name",
        "r",
    ]
    args += ["--resume_or_start"]
    for _ in range(2):
        p = seglib(*args, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
    assert "resuming" in p.stdout or "finished" in p.stdout, p.stdout
    assert sorted(f.name for f in tmp_path.iterdir() if f.is_dir() and f.name.startswith("r")) == ["r"]
    assert pd.read_csv(tmp_path / "r" / "history.csv").epoch.tolist() == [1, 2]
    p = seglib("train", "--resume_or_start", "--output_dir", tmp_path, cwd=tmp_path)
    assert p.returncode != 0 and "--resume_or_start takes --run_name" in p.stderr


def test_a_data_path_in_the_home_folder_is_taken(tmp_path, monkeypatch):
    """`--data_path=~/pets` reaches seglib with its ~ (the shell expands it only at a word's start)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "pets" / "images").mkdir(parents=True), (tmp_path / "pets" / "masks").mkdir()
    with pytest.raises(SystemExit, match=r"m\.pt' does not exist"):  # past the data check, to the model
        main(["evaluate", "--model_path", "m.pt", "--data_path=~/pets"])


def test_an_output_dir_that_is_a_file_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").write_text("notes")
    with pytest.raises(SystemExit, match=r"--output_dir out is a file; give a folder"):
        main(["predict", "--model_path", "m.pt", "--input", "x.jpg", "--output_dir", "out"])


def _train_past_its_first_epoch(synthetic_root, tmp_path, *more, **popen):
    """`python -m seglib train` of 40 small epochs in `tmp_path`/r (with `more` options), once its first
    epoch is in history.csv: the process and that file."""
    import time

    args = ["train", "--data_path", synthetic_root, "--base_channels", 4, "--epochs", 40, "--image_size", 32]
    args += [
        "--batch_size",
        4,
        "--train_limit",
        12,
        "--val_limit",
        4,
        "--output_dir",
        tmp_path,
        "--run_name",
        "r",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "seglib", *map(str, [*args, *more])],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )
    history = tmp_path / "r" / "history.csv"
    deadline = time.time() + 120
    while not history.exists() and time.time() < deadline:
        time.sleep(0.2)
    return proc, history


@pytest.mark.slow
def test_ctrl_c_then_resume_from_the_command_line(synthetic_root, tmp_path):
    import signal

    proc, history = _train_past_its_first_epoch(synthetic_root, tmp_path)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "training stopped in epoch" in err and f"python -m seglib train --resume {tmp_path / 'r'}" in err
    done = pd.read_csv(history).shape[0]
    assert 1 <= done < 40
    # A copy of the run, the newest: --resume alone (the newest run) takes the copy's settings and goes on
    # in the copy (its saved run_name, "r", found the original).
    copy = shutil.copytree(tmp_path / "r", tmp_path / "r-copy")
    (copy / "last.pt").touch()
    p = seglib("train", "--resume", "--output_dir", tmp_path, cwd=tmp_path)  # the run's saved settings
    assert p.returncode == 0, p.stderr
    assert re.search(
        r"resuming .*r-copy at (step \d+ of epoch \d+|the start of epoch \d+) \(of 40 epochs\)", p.stdout
    )
    assert pd.read_csv(copy / "history.csv").epoch.tolist() == list(range(1, 41))
    assert len(pd.read_csv(history)) == done  # the original as it stopped


@pytest.mark.slow
def test_the_usage_line_names_the_command_that_was_typed(tmp_path):
    assert seglib("--help", cwd=tmp_path).stdout.startswith("usage: python -m seglib [-h]")
    command = shutil.which("seglib", path=str(Path(sys.executable).parent))  # pip install's script
    if command is None:
        pytest.skip("seglib is not installed beside this Python (pip install -e . makes the command)")
    done = subprocess.run([command, "train", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.startswith("usage: seglib train [-h]"), done.stdout[:200] + done.stderr[-2000:]


# --- the options come from TrainConfig -------------------------------------------------------------------


def test_every_setting_is_an_option_with_help():
    options = train_options()
    assert all(NOT_OPTIONS.values())  # each exclusion says why
    assert set(options) == {f.name for f in dataclasses.fields(TrainConfig)} - set(NOT_OPTIONS)
    comments = field_comments(TrainConfig)
    assert all(comments.get(name, ("", ""))[1] for name in options), "a TrainConfig field has no comment"
    assert {section for section, _ in comments.values()} == {
        "model",
        "data",
        "optimisation",
        "machine",
        "output",
    }
    assert options["data_root"].flag == "--data_path"  # the original's name
    defaults = vars(build_parser().parse_args(["train"]))
    assert all(defaults[name] is None for name in options)  # None: the profile's value


def test_choices_are_the_constants():
    assert {
        "model": tuple(sorted(MODELS)),
        "dataset": DATASETS,
        "border": BORDER_MODES,
        "on_corrupt": ON_CORRUPT,
        "scheduler": SCHEDULERS,
        "loss": LOSSES,
        "augmentation": ("default",),
    } == CHOICES
    options = train_options()
    assert {n: o.kwargs["choices"] for n, o in options.items() if "choices" in o.kwargs} == CHOICES
    for name, choices in CHOICES.items():  # validate() checks the same lists
        assert getattr(TrainConfig(**{name: choices[-1]}), name) == choices[-1]
        with pytest.raises(ValueError, match=f"unknown {name} 'nope'"):
            TrainConfig(**{name: "nope"})
    parser = build_parser()
    for split in SPLITS:
        for command in ("evaluate", "predict"):
            assert parser.parse_args([command, "--model_path", "m.pt", "--split", split]).split == split
    for dataset in DATASETS:
        assert (
            parser.parse_args(["evaluate", "--model_path", "m.pt", "--dataset", dataset]).dataset == dataset
        )


def test_options_read_their_annotated_types():
    a = build_parser().parse_args(
        ["train", "--epochs", "3", "--lr", "0.01", "--train_limit", "5", "--no-augment", "--amp"]
        + ["--milestones", "3,6", "--model_kwargs", '{"dropout": 0.1}', "--data_path", "d", "--sync_bn"]
    )
    got = (
        a.epochs,
        a.lr,
        a.train_limit,
        a.augment,
        a.amp,
        a.milestones,
        a.model_kwargs,
        a.data_root,
        a.sync_bn,
    )
    assert got == (3, 0.01, 5, False, True, [3, 6], {"dropout": 0.1}, "d", True)
    assert a.seed is None and a.tta is None and a.output_dir is None


def test_only_the_options_given_override_the_profile():
    parse = build_parser().parse_args
    assert train_config(parse(["train", "--profile", "quick"])) == config_from_profile("quick")
    assert train_config(parse(["train"])) == TrainConfig()  # full: the original's settings
    args = ["train", "--profile", "quick", "--base_channels", "8", "--model_kwargs", '{"dropout": 0.2}']
    cfg = train_config(parse(args))
    assert cfg == config_from_profile("quick", model_kwargs={"dropout": 0.2, "base_channels": 8})
    cfg = train_config(
        parse(["train", "--profile", "tiny", "--recipe", "original", "--seed", "1", "--no-cache"])
    )
    assert cfg == config_from_profile("tiny", recipe="original", seed=1, cache=False)


@dataclass
class _Bigger(TrainConfig):
    warmup_epochs: int = 0  # epochs of linear warm-up before the schedule


@dataclass
class _Odd(TrainConfig):
    crop: tuple[int, int] = (1, 2)  # a type the command line has no reader for


def test_a_new_setting_is_an_option_with_no_other_edit():
    option = train_options(_Bigger)["warmup_epochs"]
    assert option.flag == "--warmup_epochs" and option.kwargs["type"] is int
    assert option.kwargs["help"] == "epochs of linear warm-up before the schedule (full: 0)"
    with pytest.raises(TypeError, match="NOT_OPTIONS"):  # says where to add a reader or the exclusion
        train_options(_Odd)


@dataclass
class _Retold(TrainConfig):
    epochs: int = 5  # passes over the training set in this study
    loader: dict[str, object] = dataclasses.field(default_factory=lambda: {"pin": True})  # pinned


def test_a_subclass_says_its_own_help_and_shows_its_full_value_as_the_option_reads_it():
    options = train_options(_Retold)
    assert options["epochs"].kwargs["help"] == "passes over the training set in this study (full: 5)"
    # JSON, as --loader reads it: Python's {'pin': True} would not parse
    assert options["loader"].kwargs["help"] == 'pinned (full: {"pin": true})'


def test_evaluate_and_predict_take_the_bounds_of_their_numbers():
    """The lowest and highest values each option takes: --limit 1, --num_figures 0, --image_size 32."""
    for command in ("evaluate", "predict"):
        for size in ("32", str(MAX_IMAGE_SIZE)):
            a = build_parser().parse_args(
                [command, "--model_path", "m.pt", "--limit", "1", "--num_figures", "0", "--image_size", size]
            )
            assert (a.limit, a.num_figures, a.image_size) == (1, 0, int(size))
    assert (
        build_parser().parse_args(["evaluate", "--model_path", "m.pt", "--batch_size", "1"]).batch_size == 1
    )


def test_a_run_whose_data_has_moved_is_named(tmp_path):
    """A checkpoint's data that is not there: one message naming it, not a synthetic set in its place."""
    ckpt = {"config": TrainConfig().to_dict(), "data": "oxford-pet", "data_root": str(tmp_path / "gone")}
    with pytest.raises(
        FileNotFoundError, match=r"oxford-pet data at '.*gone', which is not there .*--data_path"
    ):
        checkpoint_split(ckpt, "test")


# ------------------------------------------------------------------ evaluate: precision and threshold


def _evaluate_checkpoint(path, config):
    """A width-4 UNet (untrained: its logits sit near 0, so thresholds change its masks) saved at `path`
    with `config`."""
    import torch

    from seglib.engine import save_checkpoint
    from seglib.engine.checkpoint import model_spec
    from seglib.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", base_channels=4).eval()
    save_checkpoint(path, model, model_spec(model, "unet", {"base_channels": 4}), config=config)
    return path


def _evaluate_args(ckpt, root, out, *more):
    return ["evaluate", "--model_path", str(ckpt), "--data_path", str(root), "--split", "val", "--limit",
            "4", "--num_figures", "1", "--device", "cpu", "--output_dir", str(out), *more]  # fmt: skip


def _scored(ckpt, root, **kwargs):
    """The API's per-image Dice of the checkpoint on the split the command scores."""
    from seglib.engine import evaluate, load_model

    ds = checkpoint_split(str(ckpt), "val", str(root), None, image_size=32, limit=4)
    return evaluate(load_model(ckpt), ds, device="cpu", progress=False, **kwargs).dice.tolist()


def test_evaluate_and_predict_take_the_runs_tta_unless_told(synthetic_root, tmp_path, capsys):
    """Notebook 04 scored a run trained with tta=True with the flip, the command without it."""
    ckpt = _evaluate_checkpoint(tmp_path / "best.pt", {"image_size": 32, "tta": True})
    at = {flip: _scored(ckpt, synthetic_root, amp=False, tta=flip) for flip in (True, False)}
    assert at[True] != at[False]  # else the test could not tell them apart
    for more, flip, label in (((), True, "flip"), (("--no-tta",), False, "none")):
        out = tmp_path / label
        main(_evaluate_args(ckpt, synthetic_root, out, "--no-amp", *more))
        assert f"(the model's input 32 px, TTA {label})" in capsys.readouterr().out
        assert pd.read_csv(out / "per_image.csv").dice.tolist() == pytest.approx(at[flip], abs=1e-12)
        summary = pd.read_csv(out / "summary.csv")
        assert (set(summary.tta), set(summary.image_size), set(summary.split)) == ({label}, {32}, {"val"})
        main(["predict", *_evaluate_args(ckpt, synthetic_root, tmp_path / f"p-{label}", *more)[1:]])
        assert f"at threshold 0.5 (the model's input 32 px, TTA {label})" in capsys.readouterr().out
        dice = pd.read_csv(tmp_path / f"p-{label}" / "predictions.csv").dice.tolist()
        assert dice == pytest.approx(at[flip], abs=1e-6)  # predict scores in fp32


def test_evaluate_takes_and_says_its_precision(synthetic_root, tmp_path, capsys):
    """It scored in bf16 autocast wherever bf16 is native, could not be switched and did not say so."""
    ckpt = _evaluate_checkpoint(tmp_path / "best.pt", {"image_size": 32})
    for flag, amp, precision in (("--no-amp", False, "fp32"), ("--amp", True, "bf16 autocast")):
        main(_evaluate_args(ckpt, synthetic_root, tmp_path / flag, flag))
        said = capsys.readouterr().out
        assert f"4 images at original resolution, scored in {precision}" in said
        assert ("--no-amp scores in fp32, exactly" in said) == (precision != "fp32")
        assert set(pd.read_csv(tmp_path / flag / "summary.csv").precision) == {precision}
        scored = pd.read_csv(tmp_path / flag / "per_image.csv").dice.tolist()
        assert scored == pytest.approx(_scored(ckpt, synthetic_root, amp=amp), abs=1e-12)
    main(_evaluate_args(ckpt, synthetic_root, tmp_path / "default"))  # as before: the machine's default
    from seglib.engine.evaluate import scoring_precision  # here: the options above are what it is about

    default = scoring_precision("cpu", None)
    assert f"scored in {default}" in capsys.readouterr().out
    assert set(pd.read_csv(tmp_path / "default" / "summary.csv").precision) == {default}
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    helped = " ".join(capsys.readouterr().out.split())
    assert (
        "--amp, --no-amp" in helped
        and "fp32 gives the exact scores (as predict's); bf16 can move an image's Dice" in helped
    )


def test_evaluate_scores_at_the_runs_threshold(synthetic_root, tmp_path, capsys, monkeypatch):
    """It scored (and drew the worst images) at 0.5 whatever threshold the run validated at."""
    import inspect

    import seglib.cli.evaluate

    drawn = []  # the threshold of each save_prediction_figures call
    real = seglib.cli.evaluate.save_prediction_figures

    def spy(*a, **k):
        drawn.append(inspect.signature(real).bind(*a, **k).arguments["threshold"])
        return real(*a, **k)

    monkeypatch.setattr(seglib.cli.evaluate, "save_prediction_figures", spy)
    ckpt = _evaluate_checkpoint(tmp_path / "best.pt", {"image_size": 32, "threshold": 0.3})
    at = {t: _scored(ckpt, synthetic_root, amp=False, threshold=t) for t in (0.3, 0.5, 0.7)}
    assert at[0.3] != at[0.5] != at[0.7]  # else the test could not tell the thresholds apart
    for more, threshold in (((), 0.3), (("--threshold", "0.7"), 0.7)):
        out = tmp_path / str(threshold)
        main(_evaluate_args(ckpt, synthetic_root, out, "--no-amp", *more))
        assert f"at threshold {threshold:g}" in capsys.readouterr().out
        assert pd.read_csv(out / "per_image.csv").dice.tolist() == pytest.approx(at[threshold], abs=1e-12)
        assert set(pd.read_csv(out / "summary.csv").threshold) == {threshold}
        assert drawn.pop() == threshold
    old = _evaluate_checkpoint(tmp_path / "old.pt", {"image_size": 32})  # saved before the threshold was
    main(_evaluate_args(old, synthetic_root, tmp_path / "old_eval", "--no-amp"))
    assert set(pd.read_csv(tmp_path / "old_eval" / "summary.csv").threshold) == {0.5}
    from seglib.engine import checkpoint_threshold, load_checkpoint  # notebooks 04 and 06 take it too

    assert (checkpoint_threshold(ckpt), checkpoint_threshold(load_checkpoint(ckpt))) == (0.3, 0.3)
    assert checkpoint_threshold(old) == 0.5
    with pytest.raises(SystemExit):
        main(_evaluate_args(ckpt, synthetic_root, tmp_path / "bad", "--threshold", "1.5"))
    assert "--threshold: 1.5 is not in (0, 1)" in capsys.readouterr().err


def test_predict_takes_the_runs_threshold_as_evaluate_does(synthetic_root, tmp_path):
    """predict drew its masks at 0.5 whatever threshold the run validated at (evaluate took the run's)."""
    ckpt = _evaluate_checkpoint(tmp_path / "best.pt", {"image_size": 32, "threshold": 0.3})
    at = {t: _scored(ckpt, synthetic_root, amp=False, threshold=t) for t in (0.3, 0.5)}
    assert at[0.3] != at[0.5]
    common = ["--model_path", str(ckpt), "--device", "cpu", "--num_figures", "1"]
    split = ["--data_path", str(synthetic_root), "--split", "val", "--limit", "4"]
    for more, threshold in (((), 0.3), (("--threshold", "0.5"), 0.5)):
        out = tmp_path / f"split{threshold}"
        main(["predict", *common, *split, "--output_dir", str(out), *more])
        dice = pd.read_csv(out / "predictions.csv").dice
        assert sorted(dice) == pytest.approx(sorted(at[threshold]), abs=1e-6)
    photos = sorted((synthetic_root / "images").iterdir())[:3]
    (tmp_path / "photos").mkdir()
    for p in photos:
        (tmp_path / "photos" / p.name).write_bytes(p.read_bytes())
    fractions = {}
    for more in ((), ("--threshold", "0.3"), ("--threshold", "0.5")):
        out = tmp_path / ("files" + "".join(more))
        main(["predict", *common, "--input", str(tmp_path / "photos"), "--output_dir", str(out), *more])
        fractions[more] = pd.read_csv(out / "predictions.csv").pred_fraction.tolist()
    assert fractions[()] == fractions[("--threshold", "0.3")] != fractions[("--threshold", "0.5")]


def test_under_torchrun_only_rank_0_prints_an_error(tmp_path, monkeypatch, capsys):
    # every process hit the same error and printed it: 8 copies on an 8-GPU node
    args = ["evaluate", "--model_path", str(tmp_path / "missing.pt")]
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit) as other:
        main(args)
    assert other.value.code == 1 and "error" not in capsys.readouterr().err
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SystemExit) as first:
        main(args)
    assert "seglib evaluate: error:" in str(first.value.code)


# ------------------------------------------------------------------ predict --input and evaluate's folders
def _photos_with_masks(root, folder, n=2):
    """`n` photos of the synthetic set in `folder`, the first with its 0/255 mask beside it (NAME_mask.png)."""
    import numpy as np
    from PIL import Image

    from seglib.data import OxfordPetDataset

    folder.mkdir()
    ds = OxfordPetDataset(root, "test", limit=n)
    for i in range(n):
        Image.fromarray(ds.load_image(i)).save(folder / f"{ds.entries[i].name}.jpg")
    first = ds.entries[0].name
    Image.fromarray((ds.load_mask(0) * 255).astype(np.uint8)).save(folder / f"{first}_mask.png")
    return [e.name for e in ds.entries[:n]]


def test_predict_reads_masks_beside_their_photos(synthetic_root, tmp_path, capsys):
    """Each photo was read as its own mask ("the mask has 28849 colours") and NAME_mask.png as a photo."""
    ckpt = _evaluate_checkpoint(tmp_path / "best.pt", {"image_size": 32})
    names = _photos_with_masks(synthetic_root, tmp_path / "both")
    common = ["predict", "--model_path", str(ckpt), "--device", "cpu", "--input", str(tmp_path / "both")]
    main([*common, "--masks", str(tmp_path / "both"), "--output_dir", str(tmp_path / "out")])
    rows = pd.read_csv(tmp_path / "out" / "predictions.csv").set_index("name")
    assert sorted(rows.index) == sorted(names)  # the photos only, not the mask
    assert rows.dice.notna().tolist() == [n == names[0] for n in rows.index]  # the first with its truth
    assert (
        "2 masks and overlays at threshold 0.5 (the model's input 32 px, TTA none)" in capsys.readouterr().out
    )
    shutil.copy(tmp_path / "both" / f"{names[1]}.jpg", tmp_path / "both" / "face_mask.jpg")  # no face.jpg
    main([*common, "--output_dir", str(tmp_path / "face")])  # a photo, not a mask: it has no photo
    assert "face_mask" in set(pd.read_csv(tmp_path / "face" / "predictions.csv").name)
    (tmp_path / "both" / "face_mask.jpg").unlink()
    main([*common, "--limit", "1", "--output_dir", str(tmp_path / "one")])  # --limit was ignored
    assert len(pd.read_csv(tmp_path / "one" / "predictions.csv")) == 1
    said = capsys.readouterr().out
    assert "of the first 1 of 2 photos (--limit)" in said and "1 NAME_mask files beside their photos" in said


def test_predict_mask_values_given_empty_reads_the_masks_as_found(synthetic_root, tmp_path):
    """`--mask_values ""` (read as found) goes before the run's saved rule, as any value given does."""
    ckpt = _evaluate_checkpoint(tmp_path / "best.pt", {"image_size": 32, "mask_values": "1"})
    names = _photos_with_masks(synthetic_root, tmp_path / "both")  # the first's mask is 0/255
    both = str(tmp_path / "both")
    fg = {}
    for extra in ([], ["--mask_values", ""]):
        out = tmp_path / f"out{len(extra)}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the run's rule "1" matches no pixel of a 0/255 mask: said
            main(["predict", "--model_path", str(ckpt), "--device", "cpu", "--input", both, "--masks", both,
                  "--output_dir", str(out), *extra])  # fmt: skip
        fg[len(extra)] = pd.read_csv(out / "predictions.csv").set_index("name").fg_fraction[names[0]]
    assert fg[0] == 0 and fg[2] > 0.05


@pytest.mark.parametrize(
    ("more", "message"),
    [
        (["--output_dir", "{input}"], "--output_dir {input} is the --input folder; write elsewhere"),
        (["--output_dir", "{tmp}/x/../photos"], "--output_dir {tmp}/x/../photos is the --input folder"),
        (["--masks", "{tmp}/nowhere"], "--masks {tmp}/nowhere is not a folder"),
        (["--split", "val"], "--split val picks a split of --data_path; with --input, leave it out"),
    ],
)
def test_predict_input_refuses_what_it_would_get_wrong(synthetic_root, tmp_path, more, message):
    """Its own masks read back as photos on the next run; a bare OS error; --split silently ignored."""
    ckpt = _evaluate_checkpoint(tmp_path / "best.pt", {"image_size": 32})
    _photos_with_masks(synthetic_root, tmp_path / "photos")
    fill = {"input": tmp_path / "photos", "tmp": tmp_path}
    args = ["predict", "--model_path", str(ckpt), "--device", "cpu", "--input", str(tmp_path / "photos")]
    with pytest.raises(SystemExit) as stopped:
        main([*args, *(m.format(**fill) for m in more)])
    assert message.format(**fill) in str(stopped.value.code)
    assert len(list((tmp_path / "photos").iterdir())) == 3  # two photos and a mask: nothing written there


def test_evaluate_into_the_same_folder_keeps_only_its_own_figures(synthetic_root, tmp_path, capsys):
    """A second evaluation into the folder left the first's worst images beside its own."""
    ckpt = _evaluate_checkpoint(tmp_path / "best.pt", {"image_size": 32})
    out = tmp_path / "same"
    main(_evaluate_args(ckpt, synthetic_root, out, "--split", "test", "--num_figures", "2"))
    first = {p.name for p in (out / "worst").glob("*.png")}
    main(_evaluate_args(ckpt, synthetic_root, out, "--num_figures", "2"))  # the val split, the same folder
    names = set(pd.read_csv(out / "per_image.csv").name)
    drawn = {p.stem for p in (out / "worst").glob("*.png")}
    assert len(drawn) == 2 and drawn <= names and not first & {f"{n}.png" for n in drawn}
    assert "removed 2 figures of an earlier run" in capsys.readouterr().out


@pytest.mark.parametrize("command, folder", [("evaluate", "worst"), ("predict", "figures")])
def test_figures_of_an_earlier_run_go_and_the_users_own_files_stay(
    synthetic_root, tmp_path, capsys, command, folder
):
    """evaluate and predict --split removed every PNG of worst/ or figures/: a poster the user kept there."""
    ckpt = _evaluate_checkpoint(tmp_path / "best.pt", {"image_size": 32})
    out = tmp_path / "mine"
    (out / folder).mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 100, 50)).save(out / folder / "poster.png")
    poster = (out / folder / "poster.png").read_bytes()
    args = [command, *_evaluate_args(ckpt, synthetic_root, out, "--num_figures", "2")[1:]]
    main([*args, "--split", "test"])  # after --split val: the last one given counts
    first = {p.name for p in (out / folder).glob("*.png")} - {"poster.png"}
    capsys.readouterr()
    main(args)  # the val split: other worst images
    drawn = {p.name for p in (out / folder).glob("*.png")} - {"poster.png"}
    assert len(first) == len(drawn) == 2 and not first & drawn  # seglib's earlier figures replaced
    assert (out / folder / "poster.png").read_bytes() == poster
    assert f"removed 2 figures of an earlier run from {out / folder}" in capsys.readouterr().out


def test_resume_from_a_file_other_than_last_pt_says_so(tiny_config, tmp_path):
    from seglib.engine import fit

    with pytest.raises(
        FileNotFoundError, match=r"cannot resume from .*best\.pt: a run resumes from its last\.pt"
    ):
        fit(tiny_config(), resume=tmp_path / "run" / "best.pt")


def test_resuming_a_run_stopped_before_its_first_save_says_to_start_anew(tiny_config, tmp_path):
    """A second Ctrl-C during the first save left config.json and no last.pt: "does not exist" alone."""
    from seglib.engine import fit

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"before its first save: start it anew, without resume"):
        fit(tiny_config(), resume=tmp_path / "run")
    with pytest.raises(FileNotFoundError, match=r"last\.pt does not exist; runs live in"):
        fit(tiny_config(), resume=tmp_path / "elsewhere")


@pytest.mark.parametrize("run_name", ["r", None])
def test_resume_true_takes_the_newest_run_even_one_killed_before_its_first_save(tmp_path, run_name):
    """An older run's last.pt must not be resumed in place of the newest run, killed before it saved."""
    import os

    from seglib.engine import TrainConfig, find_resume_dir

    def run(name, at, saved):
        folder = tmp_path / name
        folder.mkdir()
        for f in ["config.json", "environment.json"] + (["last.pt"] if saved else []):
            (folder / f).write_text("{}")
            os.utime(folder / f, (at, at))
        return folder

    cfg = TrainConfig(output_dir=str(tmp_path), run_name=run_name)
    old, stopped = run("r", 1000, saved=True), run("r-2", 2000, saved=True)
    assert find_resume_dir(cfg, True) == stopped
    os.utime(old / "last.pt", (3000, 3000))  # the older run was resumed since: it is the newest now
    assert find_resume_dir(cfg, True) == old
    run("r-3", 4000, saved=False)  # a kill before the first save: config.json and environment.json only
    with pytest.raises(FileNotFoundError, match=r"r-3/last\.pt does not exist; .*start it anew.*newest run"):
        find_resume_dir(cfg, True)
    assert find_resume_dir(cfg, old) == old  # named, an older run is still resumed


def test_a_run_another_process_trains_is_neither_resumed_nor_overwritten(tmp_path, pids):
    """resume=True took a colleague's live run (both then wrote its folder); overwrite=True removed one
    under its trainer, whose next saves mixed with the new run's."""
    import os

    from seglib.engine import TrainConfig, find_resume_dir
    from seglib.engine.runs import new_run, resumed_run
    from seglib.leftovers import host

    def run(name, at):
        folder = tmp_path / name
        folder.mkdir()
        for f in ("config.json", "environment.json", "last.pt"):
            (folder / f).write_text("{}")
            os.utime(folder / f, (at, at))
        return folder

    mine, theirs = run("r", 1000), run("r-2", 2000)
    cfg = TrainConfig(output_dir=str(tmp_path), run_name="r")
    live, ended = pids
    mark = theirs / ".training"
    mark.write_text(f"{host()}-{live}")  # another process trains r-2 now
    assert find_resume_dir(cfg, True) == mine  # the newest run that no other process trains
    assert find_resume_dir(TrainConfig(output_dir=str(tmp_path)), True) == mine
    with pytest.raises(RuntimeError, match=rf"cannot resume .*r-2: process {live} on .* trains it now"):
        find_resume_dir(cfg, theirs)
    # The other nodes of a torchrun job leave marks to rank 0: one its machine left, dead, read as live
    # on theirs, and they refused alone and silently while rank 0 resumed (and waited for them).
    assert find_resume_dir(cfg, theirs, marks=False) == theirs == find_resume_dir(cfg, True, marks=False)
    overwrite = new_run(TrainConfig(output_dir=str(tmp_path), run_name="r-2", overwrite=True))
    with pytest.raises(RuntimeError, match=r"cannot overwrite .*r-2: process .* delete .*r-2/\.training\)"):
        overwrite.__enter__()
    assert (theirs / "last.pt").is_file()
    lone = tmp_path / "lone" / "x"  # the only run there, trained now
    lone.mkdir(parents=True)
    (lone / "config.json").write_text("{}")
    (lone / ".training").write_text(mark.read_text())
    with pytest.raises(FileNotFoundError, match=r"last\.pt that no other process trains now \(1 do\)"):
        find_resume_dir(TrainConfig(output_dir=str(lone.parent)), True)
    mark.write_text(f"{host()}-{ended}")  # its trainer was killed: the run is free
    (theirs / ".training.removing").write_text(f"{host()}-{ended}")  # so was a process removing its mark
    assert find_resume_dir(cfg, True) == theirs and not mark.exists()
    assert not (theirs / ".training.removing").exists()
    older = theirs / f".training-{host()}-{live}"  # the mark of an older seglib, training it now
    older.touch()
    assert find_resume_dir(cfg, True) == mine
    with pytest.raises(
        RuntimeError, match=rf"cannot resume .*r-2: process {live} on .*delete .*{older.name}\)"
    ):
        resumed_run(cfg, theirs).__enter__()
    older.rename(theirs / f".training-{host()}-{ended}")  # killed
    assert find_resume_dir(cfg, True) == theirs and not list(theirs.glob(".training-*"))
    with resumed_run(cfg, mine) as held:  # this process's own mark does not stand in its way
        assert held == mine and find_resume_dir(cfg, mine) == mine and (mine / ".training").is_file()
    assert not (mine / ".training").exists()
    with new_run(TrainConfig(output_dir=str(tmp_path), run_name="r", overwrite=True)) as again:
        assert again == mine and sorted(p.name for p in mine.iterdir()) == [".training", "config.json"]
    assert not (mine / ".training").exists()


def test_an_empty_mark_is_a_live_trainer_and_a_nested_mark_keeps_the_outer(tmp_path):
    """A mark made without hard links is empty until its maker writes its name: the run is trained, not
    free. A block marking a run this process marks already neither is refused nor removes the mark."""
    from seglib.engine import TrainConfig, find_resume_dir
    from seglib.engine.marks import training_mark

    run = tmp_path / "r"
    run.mkdir()
    for f in ("config.json", "last.pt"):
        (run / f).write_text("{}")
    cfg = TrainConfig(output_dir=str(tmp_path), run_name="r")
    (run / ".training").write_text("")  # made, not written yet
    with pytest.raises(RuntimeError, match=r"cannot resume .*r: process \? on unknown trains it now"):
        find_resume_dir(cfg, run)
    with pytest.raises(FileNotFoundError, match=r"no other process trains now \(1 do\)"):
        find_resume_dir(TrainConfig(output_dir=str(tmp_path)), True)
    (run / ".training").unlink()
    with training_mark(run) as outer:
        with training_mark(run, "resume") as inner:
            assert inner == outer == run
        assert (run / ".training").is_file()  # the outer block's still
    assert not (run / ".training").exists()


def test_a_resume_that_loses_its_run_at_the_last_moment_takes_the_next(tmp_path, pids, monkeypatch):
    """resume=True: another process marks the newest run between this one's choice and its mark; this one
    goes on to the next newest (a run given by folder is refused)."""
    import os

    from seglib.engine import TrainConfig, runs
    from seglib.leftovers import host

    for name, at in (("r", 1000), ("r-2", 2000)):
        (tmp_path / name).mkdir()
        for f in ("config.json", "last.pt"):
            (tmp_path / name / f).write_text("{}")
            os.utime(tmp_path / name / f, (at, at))
    chosen, real = [], runs.find_resume_dir

    def raced(cfg, resume, marks=True):
        run_dir = real(cfg, resume, marks)
        chosen.append(run_dir.name)
        if run_dir.name == "r-2":  # another process marks it the same moment
            (run_dir / ".training").write_text(f"{host()}-{pids[0]}")
        return run_dir

    monkeypatch.setattr(runs, "find_resume_dir", raced)
    cfg = TrainConfig(output_dir=str(tmp_path), run_name="r")
    with runs.resumed_run(cfg, True) as run_dir:
        assert run_dir.name == "r" and chosen == ["r-2", "r"]
    (tmp_path / "r-2" / ".training").unlink()
    with pytest.raises(RuntimeError, match=rf"cannot resume .*r-2: process {pids[0]} on"):
        runs.resumed_run(cfg, tmp_path / "r-2").__enter__()


def _take_at_once(runs, resume, ready, done, results):
    """Resume (resume None: mark runs[0]) the moment all processes are ready; hold the run until all tried."""
    import os

    from seglib.engine import TrainConfig
    from seglib.engine.marks import TrainedNow, training_mark
    from seglib.engine.runs import resumed_run

    cfg = TrainConfig(output_dir=str(runs[0].parent), run_name="r")
    ready.wait()
    try:
        with training_mark(runs[0]) if resume is None else resumed_run(cfg, resume) as run_dir:
            results.put((os.getpid(), run_dir.name))
            done.wait()
            return
    except (TrainedNow, FileNotFoundError) as e:
        results.put((os.getpid(), f"{type(e).__name__}: {e}"))
    done.wait()


@pytest.mark.parametrize("resume", [None, True, "named"])
def test_of_processes_that_take_one_run_at_once_one_trains_it(tmp_path, resume):
    """Two resumes of one run started within seconds both passed the check (the mark was made after the
    model was set up) and both wrote the run. Eight processes take runs at the same moment: each run goes
    to one of them, the others are told which process has it (resume=True: after trying the next run)."""
    import multiprocessing as mp
    import os

    runs = []
    for name in ("r-2", "r"):  # r-2 the newest
        (tmp_path / name).mkdir()
        for f in ("config.json", "last.pt"):
            (tmp_path / name / f).write_text("{}")
        runs.append(tmp_path / name)
    os.utime(runs[1] / "last.pt", (1000, 1000))
    ctx, n = mp.get_context("fork"), 8
    ready, done, results = ctx.Barrier(n), ctx.Barrier(n), ctx.Queue()
    how = runs[0] if resume == "named" else resume
    procs = [ctx.Process(target=_take_at_once, args=(runs, how, ready, done, results)) for _ in range(n)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(60)
    taken = {v: pid for pid, v in got.items() if v in ("r", "r-2")}
    assert sorted(taken) == (["r", "r-2"] if resume is True else ["r-2"]), got
    refused = [v for v in got.values() if v not in taken]
    assert len(refused) == n - len(taken), got
    if resume is True:  # with both runs taken, the others find no run free
        assert all("no other process trains now (2 do)" in v or "trains it now" in v for v in refused), got
    else:
        assert all(f"process {taken['r-2']} on " in v for v in refused), got
    assert not any((r / ".training").exists() for r in runs)  # each holder removed its mark on leaving


def test_fit_holds_its_run_from_its_choice_to_its_end(tiny_config, tmp_path, pids):
    """fit marks the run as this process's while it trains, removes the mark at its end, and neither
    resumes nor overwrites a run whose mark names another live process."""
    from seglib.engine import fit
    from seglib.engine.losses import build_loss
    from seglib.leftovers import host, owner_tag

    seen, bce = set(), build_loss("bce")

    def loss(logits, target):
        seen.update(m.read_text() for m in (tmp_path / "runs").glob("*/.training"))
        return bce(logits, target)

    run = fit(tiny_config(epochs=1, run_name="r"), loss_fn=loss)
    assert seen == {owner_tag()} and not (run.run_dir / ".training").exists()
    (run.run_dir / ".training").write_text(f"{host()}-{pids[0]}")
    for how in ({"resume": True}, {"resume": run.run_dir}):
        with pytest.raises(RuntimeError, match=rf"cannot resume .*: process {pids[0]} on .* trains it now"):
            fit(tiny_config(epochs=2, run_name="r"), **how)
    with pytest.raises(RuntimeError, match=rf"cannot overwrite .*: process {pids[0]} on"):
        fit(tiny_config(epochs=1, run_name="r", overwrite=True))
    assert (run.run_dir / "last.pt").is_file() and (run.run_dir / ".training").read_text().endswith(
        str(pids[0])
    )


@pytest.mark.parametrize(
    ("args", "kept"),
    [
        (["-m", "seglib", "train"], []),
        (["-uOm", "seglib", "train"], ["-uO"]),  # run together: -O was lost
        (["-Xdev", "-mseglib"], ["-Xdev"]),
        (["-W", "error", "-X", "dev", "-u", "-m", "seglib"], ["-W", "error", "-X", "dev", "-u"]),
        (["-Xfrozen_modules=off", "-Im", "seglib"], ["-Xfrozen_modules=off", "-I"]),  # an m in a value
        (["--check-hash-based-pycs", "always", "-m", "seglib"], ["--check-hash-based-pycs", "always"]),
        (["-u", "-", "-m"], ["-u"]),  # a program read from stdin: what follows is its own
    ],
)
def test_python_options_are_read_as_python_reads_them(args, kept):
    from seglib.allocator import python_options

    assert python_options(args) == kept


@pytest.mark.slow
def test_python_options_hold_in_the_command_started_again_under_jemalloc(synthetic_root, tmp_path):
    """`python -W error -m seglib predict` printed the unreadable photo's warning and exited 0: the
    command, started again under jemalloc, dropped python's own options."""
    import os

    from seglib.allocator import jemalloc_path

    if jemalloc_path() is None:
        pytest.skip("jemalloc is not installed (apt-get install libjemalloc2)")
    ckpt = _evaluate_checkpoint(tmp_path / "best.pt", {"image_size": 32})
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(next((synthetic_root / "images").glob("*.jpg")), photos / "good.jpg")
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", "SEGLIB_JEMALLOC")}
    args = ["-m", "seglib", "predict", "--model_path", str(ckpt), "--input", str(photos), "--device", "cpu"]
    for python, fails in (([], False), (["-W", "error::UserWarning"], True)):
        cmd = [sys.executable, *python, *args, "--output_dir", str(tmp_path / f"out{len(python)}")]
        out = subprocess.run(cmd, env=clean, capture_output=True, text=True, timeout=300)
        assert (out.returncode != 0) == fails and ("broken.jpg" in out.stderr + out.stdout), out.stderr


@pytest.mark.slow
def test_a_reader_that_ends_early_stops_neither_the_work_nor_its_exit_code(synthetic_root, tmp_path):
    """`seglib predict ... | head -1` exited 1 with "error: [Errno 32] Broken pipe" after writing every mask
    (buffered output), or stopped at its first line (unbuffered, as in most containers)."""
    import os

    ckpt = _evaluate_checkpoint(tmp_path / "best.pt", {"image_size": 32})
    photo = next((synthetic_root / "images").glob("*.jpg"))
    for unbuffered in ("1", ""):
        out = tmp_path / f"out{unbuffered}"
        cmd = [sys.executable, "-m", "seglib", "predict", "--model_path", str(ckpt), "--input", str(photo),
               "--device", "cpu", "--output_dir", str(out)]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        p.stdout.close()  # the reader ends before the first line
        err = p.stderr.read().decode()
        assert p.wait(timeout=300) == 0 and "Broken pipe" not in err, err
        assert (out / "predictions.csv").is_file()


def test_rank_1_says_rank_0s_error_as_torchrun_may_stop_rank_0_first(monkeypatch, capsys):
    """Two torchrun jobs resuming one run: the one refused exited 1 without a word, torchrun having stopped
    its rank 0 (SIGTERM) once rank 1 had exited, before rank 0 said why."""
    import seglib.cli.commands as commands

    def shared(a):
        raise RuntimeError(
            "rank 0 failed, so rank 1 stops too: TrainedNow: cannot resume r: process 7 trains it"
        )

    monkeypatch.setattr(commands, "_evaluate", shared)
    for rank, says in (("1", True), ("2", False)):
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(SystemExit) as stop:
            main(["evaluate", "--model_path", "m.pt"])
        assert ("cannot resume r: process 7 trains it" in str(stop.value.code)) == says


def test_one_process_a_node_says_why_the_command_ended(monkeypatch):
    """Two nodes under torchrun: only rank 0 spoke, so the other node's terminal showed a bare exit 1 (or
    torch's traceback after a Ctrl-C), whatever stopped its processes."""
    import seglib.cli.commands as commands

    def refused(a):
        raise ValueError("the 2 processes were started with other settings (lr: rank 0 0.001, rank 1 0.05)")

    monkeypatch.setattr(commands, "_evaluate", refused)
    for rank, local, says in (("0", "0", True), ("1", "0", True), ("3", "1", False)):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", local)
        with pytest.raises(SystemExit) as stop:
            main(["evaluate", "--model_path", "m.pt"])
        assert ("started with other settings" in str(stop.value.code)) == says, (rank, local)


@pytest.mark.slow
@pytest.mark.parametrize("start", ["python -m seglib", "seglib"])
def test_a_command_starts_again_under_jemalloc_before_it_imports_torch(tmp_path, start):
    """`seglib train|evaluate|predict` imported torch and albumentations (seconds), then started again under
    jemalloc and imported them again: every command began seconds late."""
    import os

    from seglib.allocator import jemalloc_path

    if jemalloc_path() is None:
        pytest.skip("jemalloc is not installed (apt-get install libjemalloc2)")
    script = Path(sys.executable).with_name("seglib")
    if start == "seglib" and not script.is_file():
        pytest.skip(f"no {script}: the project is not installed in this Python (pip install -e .)")
    command = [sys.executable, "-m", "seglib"] if start == "python -m seglib" else [str(script)]
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", "SEGLIB_JEMALLOC")}
    p = subprocess.run(
        [*command, "evaluate", "--model_path", str(tmp_path / "missing.pt")],
        env={**clean, "PYTHONPROFILEIMPORTTIME": "1"},  # each process lists its imports, in order
        capture_output=True,
        text=True,
    )
    imported = [
        line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")
    ]
    started = [i for i, name in enumerate(imported) if name == "seglib"]  # once in each process
    assert len(started) == 2, p.stderr[-2000:]
    assert "torch" not in imported[: started[1]] and "torch" in imported[started[1] :]
    assert p.returncode == 1 and "missing.pt' does not exist" in p.stderr  # the command's own error, once


def test_a_process_under_jemalloc_is_given_no_advice_to_start_under_it():
    """What is loaded counts, not the environment: a process started under jemalloc whose LD_PRELOAD was
    taken out of its environment afterwards (so that its children choose for themselves) runs under it."""
    import os

    from seglib.allocator import jemalloc_env

    if not (env := jemalloc_env()):
        pytest.skip("jemalloc is not installed (apt-get install libjemalloc2)")
    code = (
        "import os\nfrom seglib.allocator import allocator_advice, allocator_name\n"
        "del os.environ['LD_PRELOAD']\nprint(allocator_name(), repr(allocator_advice(in_kernel=False)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert out.stdout.split() == ["jemalloc", "''"], out.stderr[-2000:]


def test_a_kernel_for_other_front_ends_starts_under_jemalloc(tmp_path, monkeypatch):
    """VS Code, nbconvert and `jupyter execute` start their own kernels, without the allocator `make lab`
    and the workbook give theirs (a training's first line said "glibc malloc" and nothing more): the
    kernel `python -m seglib.jemalloc --kernel` installs runs under it, and a process without it is told."""
    import os

    from jupyter_client.manager import start_new_kernel

    from seglib.allocator import allocator_advice, jemalloc_path

    if jemalloc_path() is None:
        pytest.skip("jemalloc is not installed (apt-get install libjemalloc2)")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", "SEGLIB_JEMALLOC")}
    # a second clone's Python replaces the first's, and says so; under jemalloc already (a terminal of
    # `make lab`) it installs all the same
    spec = tmp_path / "jupyter" / "kernels" / "seglib" / "kernel.json"
    for extra in ({}, {"LD_PRELOAD": str(jemalloc_path())}):
        command = [sys.executable, "-m", "seglib.jemalloc", "--kernel"]
        done = subprocess.run(command, env=env | extra, capture_output=True, text=True)
        assert f"installed the kernel 'seglib' (Python {sys.executable})" in done.stdout, done.stderr
        if not extra:
            assert "replaces" not in done.stdout
            spec.write_text(spec.read_text().replace(json.dumps(sys.executable), '"/another/clone/python"'))
    assert "it replaces the one that started /another/clone/python" in done.stdout
    manager, client = start_new_kernel(kernel_name="seglib", startup_timeout=120)
    try:
        said = []
        code = "from seglib.allocator import allocator_name, allocator_advice; print(allocator_name(), repr(allocator_advice(True)))"
        client.execute_interactive(
            code, output_hook=lambda m: said.append(m["content"].get("text", "")), timeout=120
        )
        assert "".join(said).split() == ["jemalloc", "''"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    if "libjemalloc" not in Path("/proc/self/maps").read_text():  # this test's own process, without it
        assert "python -m seglib.jemalloc --kernel" in allocator_advice(in_kernel=True)
        assert "env $(python -m seglib.jemalloc)" in allocator_advice(in_kernel=False)

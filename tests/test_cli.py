"""The command line, run as a user runs it: python -m seglib train | evaluate | predict."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from seglib.cli import main


def seglib(*args, cwd):
    proc = subprocess.run(
        [sys.executable, "-m", "seglib", *map(str, args)], cwd=cwd, capture_output=True, text=True
    )
    return proc


@pytest.mark.slow
def test_train_evaluate_predict(synthetic_root, tmp_path):
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
    assert len(list((tmp_path / "pred").glob("*.png"))) == 3

    own = tmp_path / "my_photos"
    own.mkdir()
    for f in sorted((synthetic_root / "images").glob("*.jpg"))[:3]:
        shutil.copy(f, own / f.name)
    p = seglib(
        "predict",
        "--model_path",
        run / "best.pt",
        "--input",
        own,
        "--output_dir",
        tmp_path / "own",
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "own").glob("*_mask.png"))) == 3
    assert len(list((tmp_path / "own").glob("*_figure.png"))) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--epochs", "0"], "epochs must be a positive integer, got 0"),
        (["train", "--model", "segnet"], "invalid choice: 'segnet'"),
        (
            ["train", "--dataset", "oxford-pet", "--data_path", "nowhere"],
            "data root 'nowhere' does not exist",
        ),
        (["evaluate", "--model_path", "none.pt"], "none.pt' does not exist"),
        (["train", "--ema_decay", "1.5"], "ema_decay must be 0 (off) or in (0, 1)"),
        (["train", "--recipe", "best"], "invalid choice: 'best'"),
    ],
)
def test_bad_arguments_are_named(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code != 0
    assert message in capsys.readouterr().err + str(e.value.code)


@pytest.mark.slow
def test_ctrl_c_then_resume_from_the_command_line(synthetic_root, tmp_path):
    import signal
    import time

    args = [
        "train",
        "--data_path",
        synthetic_root,
        "--base_channels",
        "4",
        "--epochs",
        40,
        "--image_size",
        32,
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
        [sys.executable, "-m", "seglib", *map(str, args)],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    history = tmp_path / "r" / "history.csv"
    deadline = time.time() + 120
    while not history.exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "training stopped in epoch" in err and f"--resume {tmp_path / 'r'}" in err
    done = pd.read_csv(history).shape[0]
    assert 1 <= done < 40
    p = seglib(*args, "--resume", tmp_path / "r", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "resuming" in p.stdout
    assert pd.read_csv(history).epoch.tolist() == list(range(1, 41))

"""`fit(cfg, on_epoch=...)`: metrics of the user's own every epoch, recorded in the history (the returned
one, history.csv, last.pt, W&B); a resumed run hooks only the epochs it trains; a hook that raises, is
stopped or returns what a history cannot hold loses no epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_distributed import torchrun

from seglib.engine import (
    HISTORY_COLUMNS,
    EpochEnd,
    EpochHookError,
    TrainingInterrupted,
    fit,
    load_checkpoint,
    load_history,
)

pytestmark = pytest.mark.slow  # every test here trains


class Hook:
    """An on_epoch that records its calls and returns metrics of the model alone: the same numbers for
    the same weights, however the run got there."""

    def __init__(self, fail_at: int = 0, error: BaseException | None = None, returns: object = None):
        self.calls: list[EpochEnd] = []
        self.training: list[bool] = []
        self.fail_at, self.error, self.returns = fail_at, error, returns

    def __call__(self, end: EpochEnd) -> object:
        self.calls.append(end)
        self.training.append(end.model.training)
        if end.epoch == self.fail_at:
            if self.error is not None:
                raise self.error
            return self.returns
        weights = sum(p.double().abs().sum() for p in end.model.parameters())
        with torch.no_grad():  # scored as a user would: the validation images through the model
            image = end.val_dataset[0]["image"].unsqueeze(0).to(end.device)
            torch.rand(3)  # a draw of the hook's own: it must not change what the run draws after it
            logit = end.model(image).mean()
        return {"weights": weights, "epoch_x10": 10 * end.epoch, "logit": logit}

    @property
    def epochs(self) -> list[int]:
        return [end.epoch for end in self.calls]


class Recorder:
    """WandbLogger's stand-in: what the run logs each epoch."""

    logged: list[tuple[int, dict]] = []

    def __init__(self, enabled, *args) -> None:
        self.enabled = enabled

    def log(self, metrics, step) -> None:
        if self.enabled:
            Recorder.logged.append((step, metrics))

    def finish(self) -> None:
        pass


def without_seconds(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns="seconds")


def test_the_hook_sees_each_epoch_and_its_metrics_go_wherever_the_history_goes(tiny_config, monkeypatch):
    monkeypatch.setattr("seglib.engine.train.WandbLogger", Recorder)
    Recorder.logged = []
    hook = Hook()
    run = fit(tiny_config(ema_decay=0.9, use_wandb=True), on_epoch=hook)
    assert hook.epochs == [1, 2] and hook.training == [False, False]  # after validation, in eval mode
    end = hook.calls[-1]
    assert end.model is run.model  # the network validated: the EMA weights, as returned
    assert end.run_dir == run.run_dir and end.cfg == run.config and end.is_main
    assert end.device == torch.device("cpu") and len(end.val_dataset) == 6
    assert end.row == run.history.iloc[-1][HISTORY_COLUMNS].to_dict()  # the row as it was before the hook
    extras = ["weights", "epoch_x10", "logit"]
    assert list(run.history.columns) == HISTORY_COLUMNS + extras  # after the fixed columns
    assert run.history.epoch_x10.tolist() == [10.0, 20.0] and run.history.weights.gt(0).all()
    assert run.history.dtypes[extras].eq(float).all()  # an int and a 0-d tensor became floats
    pd.testing.assert_frame_equal(load_history(run.run_dir)[0], run.history)  # history.csv
    saved = load_checkpoint(run.last_checkpoint)["history"]
    assert [row["weights"] for row in saved] == run.history.weights.tolist()  # last.pt: a resume keeps them
    assert [(step, metrics["epoch_x10"]) for step, metrics in Recorder.logged] == [(1, 10.0), (2, 20.0)]
    assert "on_epoch" not in (run.run_dir / "config.json").read_text()  # code, not a setting
    # the hook's draws leave the run's own alone: a run without it trains the same weights
    plain = fit(tiny_config(ema_decay=0.9, run_name="plain"))
    pd.testing.assert_frame_equal(
        without_seconds(plain.history), without_seconds(run.history[HISTORY_COLUMNS])
    )


def test_a_resumed_run_hooks_only_the_epochs_it_trains(tiny_config, loss_at_step, tmp_path):
    whole = fit(tiny_config(output_dir=tmp_path / "a"), on_epoch=Hook())
    cfg = tiny_config(output_dir=tmp_path / "b")
    first = Hook()
    with pytest.raises(TrainingInterrupted):  # Ctrl-C at step 1 of epoch 2 (3 steps an epoch)
        fit(cfg, loss_fn=loss_at_step("ctrl_c", 4), on_epoch=first)
    assert first.epochs == [1]
    again = Hook()
    resumed = fit(cfg, resume=True, on_epoch=again)
    assert again.epochs == [2]  # epoch 1's metrics came from last.pt, not from a second call
    pd.testing.assert_frame_equal(without_seconds(resumed.history), without_seconds(whole.history))
    # resumed without the hook: its epochs have no such metrics (NaN), the earlier ones keep theirs
    cfg = tiny_config(output_dir=tmp_path / "c")
    with pytest.raises(TrainingInterrupted):
        fit(cfg, loss_fn=loss_at_step("ctrl_c", 4), on_epoch=Hook())
    plain = fit(cfg, resume=True)
    for history in (plain.history, load_history(plain.run_dir)[0]):
        assert history.weights.iloc[0] == whole.history.weights.iloc[0] and np.isnan(history.weights.iloc[1])


@pytest.mark.parametrize(
    "error, raised, said",
    [
        (
            ValueError("no IoU today"),
            EpochHookError,
            r"on_epoch raised after epoch 1 \(ValueError: no IoU today\)",
        ),
        (KeyboardInterrupt(), TrainingInterrupted, "training stopped in the on_epoch hook after epoch 1"),
    ],
)
def test_a_hook_that_raises_or_is_stopped_loses_no_epoch(tiny_config, error, raised, said, monkeypatch):
    monkeypatch.setattr("seglib.engine.train.WandbLogger", Recorder)
    Recorder.logged = []
    cfg = tiny_config(use_wandb=True)
    with pytest.raises(raised, match=said) as e:
        fit(cfg, on_epoch=Hook(fail_at=1, error=error))
    (run_dir,) = Path(cfg.output_dir).iterdir()
    message = str(e.value)
    assert f"{run_dir / 'last.pt'} holds epoch 1" in message
    assert f"fit(cfg, resume={str(run_dir)!r})" in message and f"train --resume {run_dir}" in message
    if raised is EpochHookError:
        assert e.value.__cause__ is error  # the hook's own traceback
    else:
        assert e.value.saved
    last = load_checkpoint(run_dir / "last.pt")
    assert last["epoch"] == 1 and list(last["history"][0]) == HISTORY_COLUMNS  # the epoch, without metrics
    assert load_history(run_dir)[0].epoch.tolist() == [1]
    hook = Hook()
    resumed = fit(cfg, resume=True, on_epoch=hook)
    assert hook.epochs == [2] and resumed.history.epoch.tolist() == [1, 2]
    assert np.isnan(resumed.history.weights.iloc[0]) and resumed.history.weights.iloc[1] > 0
    assert [step for step, _ in Recorder.logged] == [1, 2]  # W&B has the failed hook's epoch too


@pytest.mark.parametrize(
    "returned, said",
    [
        ({"val_dice": 1.0}, "returned 'val_dice', a column the history has already"),
        ({"iou": "high"}, "returned 'iou': 'high' \\(str\\); each metric must be one real number"),
        ({3: 1.0}, "returned the metric name 3 \\(int\\); name each metric with a non-empty string"),
        ({"good": True}, "returned 'good': True \\(bool\\)"),
        ({"iou": torch.ones(2)}, "returned 'iou': a tensor of shape \\(2,\\)"),
        ([0.5], "returned a list; return None or a dict"),
    ],
)
def test_what_a_history_cannot_hold_is_refused_by_name_and_the_epoch_kept(tiny_config, returned, said):
    cfg = tiny_config()
    with pytest.raises(ValueError, match=f"^on_epoch, after epoch 1, {said}") as e:
        fit(cfg, on_epoch=Hook(fail_at=1, returns=returned))
    assert "holds epoch 1, without the hook's metrics. Resume with" in str(e.value)
    (run_dir,) = Path(cfg.output_dir).iterdir()
    history = load_history(run_dir)[0]
    assert history.epoch.tolist() == [1] and list(history.columns) == HISTORY_COLUMNS


def test_a_blank_name_or_a_complex_number_is_refused_as_a_history_cannot_hold_it():
    """fit's check of what on_epoch returns, called as fit calls it: a name of spaces is no name, and a
    complex tensor of one element is no real number (float() of it raised a TypeError, not this ValueError)."""
    from seglib.engine.hooks import checked_metrics

    with pytest.raises(ValueError, match=r"^returned the metric name ' ' \(str\); name each metric with"):
        checked_metrics({" ": 1.0})
    with pytest.raises(ValueError, match=r"^returned 'iou': a tensor of shape \(\) \(Tensor\); each metric"):
        checked_metrics({"iou": torch.tensor(1 + 2j)})
    with pytest.raises(ValueError, match=r"^returned 'epoch', a column the history has already"):
        checked_metrics({"epoch": 3})  # the first column too
    assert checked_metrics({"iou": torch.tensor(0.5), "n": np.int64(3)}) == {"iou": 0.5, "n": 3.0}


def test_a_hook_that_changes_what_it_is_given_changes_no_run(tiny_config):
    """`end.cfg` and `end.row` are the hook's copies: a hook that sets them changes neither the run's
    epochs nor its history."""

    def meddle(end):
        end.cfg.epochs = 1
        end.row["val_dice"] = -1.0

    run = fit(tiny_config(), on_epoch=meddle)
    assert run.history.epoch.tolist() == [1, 2] and run.config.epochs == 2
    assert run.history.val_dice.ge(0).all()


def test_a_hook_failing_in_the_last_epoch_says_the_training_is_done(tiny_config):
    cfg = tiny_config()
    with pytest.raises(EpochHookError, match="the run's training is done: .* holds its last epoch, 2") as e:
        fit(cfg, on_epoch=Hook(fail_at=2, error=RuntimeError("disk full")))
    assert "Resume with" not in str(e.value)


# Under torchrun: every rank calls the hook, rank 0's metrics are every rank's; a hook failing on rank 1
# alone stops both ranks, after rank 0 saved the epoch.
HOOK_SCRIPT = """
import json, os, sys
from pathlib import Path
from seglib.engine import EpochHookError, TrainConfig, fit
from seglib.engine.distributed import cleanup, init_distributed

info = init_distributed("cpu")  # one group for both runs
out, rank = Path(os.environ["SEGLIB_TEST_OUT"]), int(os.environ["RANK"])
cfg, calls = TrainConfig(**json.loads(sys.argv[1])), []

def hook(end):
    calls.append((end.epoch, end.is_main))
    return {"rank": rank}

def fails_on_rank_1(end):
    if rank == 1:
        raise OSError("rank 1's disk")
    return {"rank": rank}

run = fit(cfg, on_epoch=hook)
said = ""
try:
    fit(cfg.__class__(**{**cfg.to_dict(), "run_name": "fails"}), on_epoch=fails_on_rank_1)
except EpochHookError as e:
    said = str(e)
(out / f"rank{rank}.json").write_text(json.dumps({"calls": calls, "ranks": run.history["rank"].tolist(), "said": said}))
cleanup(info)
"""


def test_under_torchrun_every_rank_calls_the_hook_and_keeps_rank_0s_metrics(tiny_config, tmp_path):
    (tmp_path / "hook_script.py").write_text(HOOK_SCRIPT)
    cfg = tiny_config(run_name="ddp", device="cpu")
    torchrun("hook_script.py", json.dumps(cfg.to_dict()), out=tmp_path)
    for rank in (0, 1):
        seen = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert seen["calls"] == [[1, rank == 0], [2, rank == 0]]
        assert seen["ranks"] == [0.0, 0.0]  # rank 0's, on every rank
        assert "rank 1's on_epoch raised after epoch 1 (OSError: rank 1's disk)" in seen["said"]
        assert "torchrun ... -m seglib train --resume" in seen["said"]
    assert load_history(tmp_path / "runs" / "ddp")[0]["rank"].tolist() == [0.0, 0.0]
    assert load_checkpoint(tmp_path / "runs" / "fails" / "last.pt")["epoch"] == 1

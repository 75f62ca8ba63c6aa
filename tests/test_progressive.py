"""Progressive resizing: the first epochs train on smaller images (seglib/engine/progressive.py)."""

import json

import pandas as pd
import pytest
import torch
from conftest import tiny_train_config

from seglib.engine import TrainConfig, fit, load_checkpoint
from seglib.engine.budget import next_plan, planned_epochs
from seglib.engine.losses import build_loss
from seglib.engine.progressive import epoch_size, shrink_batch
from seglib.engine.train import TrainingInterrupted


def test_the_smaller_sizes_share_the_first_epochs_in_order():
    sizes = [epoch_size([64, 96], 0.5, 128, e, 10) for e in range(1, 11)]
    assert sizes == [64, 64, 64, 96, 96] + [128] * 5
    assert [epoch_size([64], 0.7, 96, e, 10) for e in range(1, 11)] == [64] * 7 + [96] * 3
    assert epoch_size(None, 0.5, 96, 1, 10) == 96
    assert epoch_size([64], 0.5, 96, 1, 1) == 96  # a one-epoch run trains at its size
    # a plan lengthened from 10 to 20 epochs after epoch 4 (at 96 px): 5-10 would be 64 px again
    assert [epoch_size([64, 96], 0.5, 128, e, 20, reached=96) for e in (5, 10, 11)] == [96, 96, 128]


def test_a_shrunk_batch_keeps_image_and_mask_aligned_and_the_mask_binary():
    images = torch.full((2, 3, 64, 64), -1.0)
    masks = torch.zeros((2, 1, 64, 64))
    images[:, :, 8:40, 16:48] = 1.0  # a bright square where the mask is 1
    masks[:, :, 8:40, 16:48] = 1.0
    masks[1, :, 0:4, :] = 255.0  # the ignore value (border="ignore") stays what it is
    x, m = shrink_batch(images, masks, 32, channels_last=True)
    assert x.shape == (2, 3, 32, 32) and m.shape == (2, 1, 32, 32)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert set(m.unique().tolist()) == {0.0, 1.0, 255.0}
    assert torch.equal(m[0, 0] == 1, x[0, 0] > 0)  # the square is at the same place in both
    assert torch.equal(m[0, 0, 4:20, 8:24], torch.ones(16, 16))
    same = shrink_batch(images, masks, 64, channels_last=False)
    assert same[0] is images and same[1] is masks
    # 96 -> 64 px, not by 2: the mask shrinks centred as the image does (floor-nearest moved it 21 px off)
    images, masks = torch.full((1, 3, 96, 96), -1.0), torch.zeros((1, 1, 96, 96))
    images[:, :, 8:40, 16:48], masks[:, :, 8:40, 16:48] = 1.0, 1.0
    x, m = shrink_batch(images, masks, 64, channels_last=False)
    assert torch.equal(m[0, 0] == 1, x[0, 0] > 0)


def test_progressive_sizes_are_checked_against_the_image_size():
    TrainConfig(image_size=96, progressive_sizes=[64])
    for bad in ([96], [128], [64, 48], [16], [], [64, 64]):
        with pytest.raises(ValueError, match="progressive_sizes must be"):
            TrainConfig(image_size=96, progressive_sizes=bad)
    with pytest.raises(ValueError, match="progressive_share must be in"):
        TrainConfig(image_size=96, progressive_sizes=[64], progressive_share=1.0)
    # the example fits the size at hand (it said "e.g. [64]" for image_size 32 and 64)
    with pytest.raises(ValueError, match=r"below image_size \(96\), e\.g\. \[48\]"):
        TrainConfig(image_size=96, progressive_sizes=[128])
    TrainConfig(image_size=96, progressive_sizes=[48])
    with pytest.raises(ValueError, match="none fits below image_size 32: leave it out"):
        TrainConfig(image_size=32, progressive_sizes=[64])


def test_a_budget_plans_each_size_at_its_own_pace():
    def size_at(epoch, epochs):
        return epoch_size([64], 0.5, 128, epoch, epochs)

    # 4 epochs at 64 px, 2 s each after the first; 128 px, not seen yet, is taken at 4x the pixels: 8 s.
    # Plans of n epochs: n // 2 at 64 px. 99 s left: 20 epochs (6 more at 64 px, 10 at 128 px: 92 s; 21: 100 s)
    assert planned_epochs([4, 2, 2, 2], 109, margin=1.0, sizes=[64] * 4, size_at=size_at) == 20
    # once 128 px has a pace of its own (5 s), it counts: 80 s left buy 16 more epochs
    seconds, sizes = [4, 2, 2, 2, 2, 2, 2, 2, 2, 2, 5, 5], [64] * 10 + [128] * 2
    assert planned_epochs(seconds, 112, margin=1.0, sizes=sizes, size_at=lambda e, n: 128) == 12 + 16


def test_a_budget_waits_for_a_pace_at_every_size_ahead():
    def size_at(epoch, epochs, reached=0):
        return epoch_size([64], 0.5, 128, epoch, epochs, reached)

    # after 3 epochs at 64 px, 128 px has no pace yet: the plan stays
    assert next_plan([4, 2, 2], 100, 10, sizes=[64] * 3, size_at=size_at) == 10
    # the first epoch at 128 px (8 s) gives it one: 78 s left buy 9 more at 128 px (74 s with the margin)
    seconds, sizes = [4, 2, 2, 2, 2, 2, 8], [64] * 6 + [128]
    assert next_plan(seconds, 100, 10, sizes, lambda e, n: size_at(e, n, reached=128)) == 16
    # a faster epoch after it (23 s in all, short of the mark at 25 s) waits for the mark
    assert next_plan([*seconds, 1], 100, 16, [*sizes, 128], lambda e, n: size_at(e, n, reached=128)) == 16


RUN = dict(epochs=6, train_limit=14, image_size=64, progressive_sizes=[32, 48], run_name="r", lr=3e-3)


@pytest.mark.slow
def test_a_progressive_run_learns_records_its_sizes_and_resumes_bit_identically(
    synthetic_root, tmp_path, loss_at_step
):
    cfg = tiny_train_config(synthetic_root, tmp_path / "a", scheduler="onecycle", **RUN)
    loss, seen = build_loss(cfg.loss), []

    def recording(logits, target):  # the run's own loss; it notes what size each training step saw
        if torch.is_grad_enabled():
            seen.append((logits.shape[-1], target.shape[-1]))
        return loss(logits, target)

    whole = fit(cfg, loss_fn=recording)
    assert whole.history.train_size.tolist() == [32, 32, 48, 64, 64, 64]
    assert seen == [(s, s) for s in [32, 32, 48, 64, 64, 64] for _ in range(4)]  # 4 steps an epoch
    assert whole.history.train_loss.iloc[-1] < whole.history.train_loss.iloc[0]
    with pytest.raises(TrainingInterrupted):  # in epoch 3, the first at 48 px
        fit(
            tiny_train_config(synthetic_root, tmp_path / "b", scheduler="onecycle", **RUN),
            loss_fn=loss_at_step("ctrl_c", 10),
        )
    resumed = fit(tiny_train_config(synthetic_root, tmp_path / "b", scheduler="onecycle", **RUN), resume=True)
    assert resumed.history.drop(columns="seconds").equals(whole.history.drop(columns="seconds"))
    a, b = load_checkpoint(whole.run_dir / "last.pt"), load_checkpoint(resumed.run_dir / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    saved = json.loads((whole.run_dir / "config.json").read_text())
    assert saved["progressive_sizes"] == [32, 48] and TrainConfig(**saved).progressive_share == 0.5


@pytest.mark.slow
def test_a_budgeted_progressive_run_replans_once_it_has_trained_at_every_size(
    synthetic_root, tmp_path, loss_at_step, capsys
):
    # a budget of 100 minutes would lengthen the plan at the first pace (epoch 3, at 48 px), but 64 px has
    # no pace yet: the plan waits for epoch 4, the first at 64 px, and lengthens there by far
    cfg = tiny_train_config(synthetic_root, tmp_path, budget_minutes=100, scheduler="onecycle", **RUN)
    with pytest.raises(TrainingInterrupted):  # at the first step of epoch 6 (4 steps an epoch)
        fit(cfg, loss_fn=loss_at_step("ctrl_c", 21))
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    assert history.train_size.tolist() == [32, 32, 48, 64, 64]
    out = capsys.readouterr().out
    assert out.count("re-planned") == 1 and "4 epochs took" in out
    assert json.loads((tmp_path / "r" / "config.json").read_text())["epochs"] > 100

"""A run with a budget of minutes re-plans its epochs from its own epochs' times (seglib/engine/budget.py)."""

import json

import pytest
import torch
from conftest import tiny_train_config

from seglib.engine import TrainConfig, fit, load_checkpoint
from seglib.engine.budget import kept_plan_note, next_plan, planned_epochs
from seglib.engine.schedulers import lr_curve, rescheduled
from seglib.engine.train import TrainingInterrupted


def test_the_plan_keeps_the_epochs_done_and_adds_what_fits_at_the_recent_pace():
    # 4 epochs done in 25 s at 5 s each after the first: 75 s left buy 15 more (14 with the margin)
    assert planned_epochs([10, 5, 5, 5], 100, margin=1.0) == 19
    assert planned_epochs([10, 5, 5, 5], 100) == 18
    # slowing down: the later half ran at 6 s an epoch, the last five at 7.4 s: 68 s left buy 9, not 11
    slowing = [5.0] * 20 + [8.0] * 4
    assert planned_epochs(slowing, 200, margin=1.0) == 24 + 9
    assert planned_epochs([30, 30, 30], 60) == 3  # the budget is spent: stop here
    with pytest.raises(ValueError, match="at least one epoch"):
        planned_epochs([], 60)


def test_the_plan_grows_or_shrinks_at_its_marks_and_only_shrinks_past_the_last():
    budget = 100.0  # marks at 25, 60 and 85 s; at 5 s an epoch, 19 epochs fit
    assert next_plan([5, 5], budget, planned=30) == 30  # no pace yet
    assert next_plan([5, 5, 5], budget, planned=30) == 19  # the first pace: shrinks
    assert next_plan([5, 5, 5], budget, planned=10) == 19  # or grows
    assert next_plan([5] * 4, budget, planned=10) == 10  # between marks it does not grow
    assert next_plan([5] * 5, budget, planned=10) == 19  # at 25 s it does
    assert next_plan([5] * 7 + [9], budget, planned=19) == 19  # a slow epoch before the last mark: kept
    # past the last mark a slower pace shrinks it: 5.4 s an epoch (the last five), 8 s left buy 1, not 2
    assert next_plan([5] * 17 + [7], budget, planned=20) == 19
    assert next_plan([5] * 17 + [4], budget, planned=19) == 19  # 20 would fit: it never grows between marks
    assert next_plan([5] * 17, budget, planned=17) == 17  # never past the planned end


def _run_out(seconds_of, budget: float, planned: int) -> list[float]:
    """The epochs' seconds of a run that re-plans after each epoch as `fit` does."""
    seconds: list[float] = []
    while len(seconds) < planned:
        seconds.append(seconds_of(len(seconds)))
        planned = next_plan(seconds, budget, planned)
    return seconds


def test_a_stall_costs_its_own_time_but_does_not_slow_the_pace_ahead():
    # 90 s spent, a 30 s stall among 5 s epochs: the 110 s left buy 22 more at 5 s, not 11 at the stall's mean
    assert planned_epochs([10] + [5] * 10 + [30], 200, margin=1.0) == 12 + 22
    # a 12 s stall as the run crosses its last mark (85 of 100 s): it goes on to 97 s, it used to stop at 92
    done = _run_out(lambda epoch: 12.0 if epoch == 15 else 5.0, 100, planned=20)
    assert len(done) == 18 and sum(done) == 97
    # a slowdown that lasts is no stall: three epochs of 11 s past the last mark shrink the plan (36 at 5 s)
    assert next_plan([5] * 30 + [11] * 3, 200, planned=40) == 34


@pytest.mark.parametrize("scheduler", ["onecycle", "cosine", "multistep", "step"])
def test_a_replanned_schedule_goes_on_as_if_planned_so_from_the_start(scheduler):
    first, steps = TrainConfig(epochs=10, lr=1e-3, scheduler=scheduler, step_size=2), 5
    new = TrainConfig(epochs=14, lr=1e-3, scheduler=scheduler, step_size=2)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=first.lr)
    # the run's own schedule for 6 epochs first: the optimizer's lr has decayed under it (cosine, step
    # and multistep go on from the optimizer's lr, so the re-plan must not decay it a second time)
    rescheduled(first, opt, steps, steps_done=30, epochs_done=6)
    assert opt.param_groups[0]["lr"] < first.lr
    sched = rescheduled(new, opt, steps, steps_done=30, epochs_done=6)
    lrs = []
    for step in range(30, 14 * steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if scheduler == "onecycle" or step % steps == steps - 1:
            sched.step()
    assert lrs == pytest.approx(lr_curve(new, steps)[30:], rel=1e-12)


RUN = dict(epochs=6, train_limit=14, lr=3e-3, scheduler="onecycle", run_name="r", checkpoint_every=2)


@pytest.mark.slow
def test_a_run_whose_budget_is_spent_stops_and_resumes_to_the_same_end(
    synthetic_root, tmp_path, loss_at_step, capsys
):
    spent = 1e-4  # minutes: spent by the first epoch, so the first re-plan (after 3 epochs) ends the run
    whole = fit(tiny_train_config(synthetic_root, tmp_path / "a", budget_minutes=spent, **RUN))
    assert len(whole.history) == 3 and whole.config.epochs == 3
    out = capsys.readouterr().out
    assert "budget 0.0001 min: 3 epochs took" in out and "re-planned 6 -> 3 epochs" in out
    assert json.loads((whole.run_dir / "config.json").read_text())["epochs"] == 3
    assert (whole.run_dir / "epochs" / "epoch_003.pt").is_file()  # the last model is kept as the run's last
    with pytest.raises(TrainingInterrupted):  # in epoch 2, before the re-plan
        fit(
            tiny_train_config(synthetic_root, tmp_path / "b", budget_minutes=spent, **RUN),
            loss_fn=loss_at_step("ctrl_c", 6),
        )
    resumed = fit(tiny_train_config(synthetic_root, tmp_path / "b", budget_minutes=spent, **RUN), resume=True)
    assert resumed.history.drop(columns="seconds").equals(whole.history.drop(columns="seconds"))
    a, b = load_checkpoint(whole.run_dir / "last.pt"), load_checkpoint(resumed.run_dir / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    again = fit(tiny_train_config(synthetic_root, tmp_path / "b", budget_minutes=spent, **RUN), resume=True)
    assert len(again.history) == 3  # a finished run resumed with its first plan trains no more


def test_a_first_plan_too_short_to_replan_is_kept_and_said(synthetic_root, tmp_path, capsys):
    # 2 epochs end before the run has a pace (3): lengthened then, the lr annealed in them would rise again
    run = fit(tiny_train_config(synthetic_root, tmp_path, budget_minutes=1.0, **{**RUN, "epochs": 2}))
    assert len(run.history) == 2
    said = capsys.readouterr().out
    assert "budget 1 min: the first plan of 2 epoch(s) is kept" in said and "give epochs >= 4" in said
    assert kept_plan_note(3, 1.0) and kept_plan_note(4, 1.0) == kept_plan_note(2, None) == ""


@pytest.mark.slow
def test_a_run_with_time_left_lengthens_its_plan_and_a_resume_keeps_it(
    synthetic_root, tmp_path, loss_at_step, capsys
):
    # 100 minutes lengthen the plan at its first pace however slow a busy machine makes these epochs
    cfg = tiny_train_config(synthetic_root, tmp_path, budget_minutes=100, **RUN)
    with pytest.raises(TrainingInterrupted):  # epoch 4, after the re-plan at the end of epoch 3
        fit(cfg, loss_fn=loss_at_step("ctrl_c", 14))
    saved = load_checkpoint(tmp_path / "r" / "last.pt")
    epochs = saved["config"]["epochs"]
    assert epochs > 6 and json.loads((tmp_path / "r" / "config.json").read_text())["epochs"] == epochs
    with pytest.raises(TrainingInterrupted):  # resumed with the first plan: it goes on with the saved one
        fit(cfg, resume=True, loss_fn=loss_at_step("ctrl_c", 3))  # epoch 5, step 1
    assert f"at step 2 of epoch 4 (of {epochs} epochs)" in capsys.readouterr().out
    last = load_checkpoint(tmp_path / "r" / "last.pt")
    lrs, now = last["lr_log"], last["config"]["epochs"]  # epoch 4's end may have shrunk the plan again

    def curve(n):
        return lr_curve(TrainConfig(**{**cfg.to_dict(), "epochs": n}), steps_per_epoch=4)

    assert len(lrs) == 17 and lrs[12:16] == pytest.approx(curve(epochs)[12:16], rel=1e-12)  # epoch 4
    assert lrs[16] == pytest.approx(curve(now)[16], rel=1e-12)  # epoch 5, on the plan made after epoch 4

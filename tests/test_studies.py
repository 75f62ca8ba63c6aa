"""Notebooks 05 and 06 as seglib.study runs them: run folders that keep earlier work, scored curves kept
on disk, summaries that call a tie a tie, and parameters checked before anything is timed or trained."""

import dataclasses
import json

import pandas as pd
import pytest
import torch
from conftest import tiny_train_config

from seglib.data import OxfordPetDataset, make_synthetic_folder
from seglib.engine import TrainConfig, TrainingInterrupted, fit
from seglib.engine.environment import record_start, run_environment
from seglib.study import (
    CURVE_FILE,
    RECIPE_STUDIES,
    dice_at_budgets,
    epochs_for_budget,
    models_at_budget,
    parse_recipes,
    plan_recipe_study,
    recipe_summary,
    run_recipe_job,
    scheduler_summary,
    scheduler_table,
    train_once,
)


def workspace(profile, tmp_path):
    """A notebook's Workspace on data that need not exist: planning reads none."""
    from seglib.workspace import Workspace

    data = tmp_path / "data"
    return Workspace(str(data), "oxford-pet", data, "oxford-pet", profile, tmp_path / "results")


# --- item 1: a study of another seed or model keeps its own runs --------------------------------------
def test_recipe_runs_name_the_model_and_seed_and_never_overwrite(tmp_path):
    ws = workspace("tiny", tmp_path)
    study = RECIPE_STUDIES["tiny"].with_params(recipes="original")
    names = {
        (model, seed): plan_recipe_study(ws.config, study, model, "tiny", seed=seed).jobs[0][2]
        for model in ("unet", "resnet34_unet")
        for seed in (42, 7)
    }
    assert names[("unet", 7)].run_name == "recipe-original-fixed-unet-s7-tiny"
    assert len({cfg.run_name for cfg in names.values()}) == 4  # four studies, four folders
    assert not any(cfg.overwrite for cfg in names.values())  # the plan never deletes a folder


def _job(root, out, seed=42, **kw):
    """A tiny recipe run (2 epochs, each model kept) as plan_recipe_study makes one."""
    name = f"recipe-original-fixed-unet-s{seed}-tiny"
    kw = {"epochs": 2, "train_limit": 8, "checkpoint_every": 1, "run_name": name, "seed": seed, **kw}
    return tiny_train_config(root, out, **kw)


def _tests(root):
    return lambda size: OxfordPetDataset(root, "test", image_size=size, limit=4)


@pytest.mark.slow
def test_a_study_of_another_seed_keeps_the_first_and_the_same_config_is_reused(
    synthetic_root, tmp_path, capsys
):
    out = tmp_path / "runs"
    first = run_recipe_job("original", None, _job(synthetic_root, out), _tests(synthetic_root), "cpu")
    other = run_recipe_job("original", None, _job(synthetic_root, out, seed=7), _tests(synthetic_root), "cpu")
    assert first.run_dir != other.run_dir and not first.reused and not other.reused
    assert (first.run_dir / CURVE_FILE).is_file() and (other.run_dir / CURVE_FILE).is_file()
    assert TrainConfig.load(first.run_dir / "config.json").seed == 42  # not overwritten by seed 7
    # the same settings again: found finished and scored, not trained again
    again = run_recipe_job("original", None, _job(synthetic_root, out), _tests(synthetic_root), "cpu")
    assert again.reused and again.run_dir == first.run_dir
    pd.testing.assert_frame_equal(again.curve, first.curve, check_dtype=False)
    assert "trained before with this config" in capsys.readouterr().out
    # another config under the same name (here every epoch's model vs the last only) gets its own folder
    other_cfg = _job(synthetic_root, out, checkpoint_every=2)
    moved = run_recipe_job("original", None, other_cfg, _tests(synthetic_root), "cpu")
    assert moved.run_dir.name == f"{first.run_dir.name}-2" and not moved.reused
    assert (first.run_dir / CURVE_FILE).is_file() and len(moved.curve) == 1


def test_a_shorter_budgets_run_is_found_again_whatever_its_timed_plan(tmp_path):
    from seglib.study.runs import same_config

    # a shorter budget's run keeps its last model only (checkpoint_every = its epochs); both come from a
    # timing that varies: planned 6 and re-planned to 7 then, planned 1 now on a busier machine
    saved = TrainConfig(budget_minutes=0.05, epochs=7, checkpoint_every=6)
    saved.save(tmp_path / "config.json")
    record_start(tmp_path, run_environment(torch.device("cpu"), use_amp=False))
    assert same_config(dataclasses.replace(saved, epochs=1, checkpoint_every=1), tmp_path)
    assert not same_config(dataclasses.replace(saved, epochs=10, checkpoint_every=2), tmp_path)  # every 2nd
    assert not same_config(dataclasses.replace(saved, epochs=1, checkpoint_every=1, lr=0.5), tmp_path)
    fixed = TrainConfig(epochs=7, checkpoint_every=7)  # no budget: the epochs are the user's, compared
    fixed.save(tmp_path / "config.json")
    assert not same_config(dataclasses.replace(fixed, epochs=1, checkpoint_every=1), tmp_path)


# --- item 2: a study stopped while scoring keeps the runs it finished ------------------------------------
@pytest.mark.slow
def test_a_study_stopped_while_scoring_keeps_finished_runs_and_reuses_them(
    synthetic_root, tmp_path, monkeypatch
):
    import seglib.study.runs as runs

    out, tests = tmp_path / "runs", _tests(synthetic_root)
    a, b = _job(synthetic_root, out), _job(synthetic_root, out, seed=7)
    scored = runs.score_kept_models
    calls = []

    def stopped_at_the_second(*args, **kw):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second run is scored
        return scored(*args, **kw)

    monkeypatch.setattr(runs, "score_kept_models", stopped_at_the_second)
    done = run_recipe_job("original", None, a, tests, "cpu")
    with pytest.raises(KeyboardInterrupt):
        run_recipe_job("original", None, b, tests, "cpu")
    # the first run's curve is on disk, its models gone; the second run's models are still there
    assert pd.read_csv(done.run_dir / CURVE_FILE).epoch.tolist() == [1, 2]
    assert not (done.run_dir / "epochs").exists() and (out / b.run_name / "epochs").is_dir()
    monkeypatch.setattr(runs, "score_kept_models", scored)

    def no_training(cfg):
        raise AssertionError(f"{cfg.run_name} trained again")

    monkeypatch.setattr(runs, "fit", no_training)  # a rerun trains neither
    first, second = (run_recipe_job("original", None, cfg, tests, "cpu") for cfg in (a, b))
    assert first.reused and second.reused and second.curve.epoch.tolist() == [1, 2]
    assert (out / b.run_name / CURVE_FILE).is_file() and not (out / b.run_name / "epochs").exists()
    pd.testing.assert_frame_equal(first.curve, done.curve, check_dtype=False)


# --- item 3: ties are ties ------------------------------------------------------------------------------
def _history(val_dice, seconds):
    n = len(val_dice)
    return pd.DataFrame({"epoch": range(1, n + 1), "val_dice": val_dice, "seconds": seconds})


@pytest.mark.slow
def test_a_rerun_of_the_scheduler_study_reads_finished_runs_and_goes_on_with_a_stopped_one(
    synthetic_root, tmp_path, capsys, loss_at_step
):
    """Run again after its stop button, notebook 05 trained every scheduler anew, the finished ones too,
    each in a new folder (-2, -3, ...)."""
    out = tmp_path / "runs"
    cfg = tiny_train_config(synthetic_root, out, run_name="schedulers-cosine-tiny", scheduler="cosine")
    first = train_once(cfg)
    again = train_once(cfg)
    assert "schedulers-cosine-tiny: trained before with this config" in capsys.readouterr().out
    pd.testing.assert_frame_equal(again, first, check_dtype=False)
    stopped = dataclasses.replace(cfg, run_name="schedulers-none-tiny", scheduler="none")
    with pytest.raises(TrainingInterrupted):
        fit(stopped, loss_fn=loss_at_step("ctrl_c", 4))  # in its second epoch
    history = train_once(stopped)
    assert "schedulers-none-tiny: stopped part-way with this config; going on" in capsys.readouterr().out
    assert list(history.epoch) == [1, 2]
    assert sorted(p.name for p in out.iterdir()) == ["schedulers-cosine-tiny", "schedulers-none-tiny"]


def test_scheduler_summary_names_every_scheduler_level_with_the_best():
    table = scheduler_table(
        {s: _history([0.1, 0.18421], [4.0, 0.1]) for s in ("none", "cosine")}
        | {"step": _history([0.1, 0.184205], [0.1, 0.1])}
    )
    text = scheduler_summary(table, 2, 1e-3)
    assert "every scheduler ties for the best validation Dice (0.1842)" in text and "reaches" not in text
    table.loc["cosine", "best val Dice"] = 0.2
    table.loc["step", "best val Dice"] = 0.20004
    text = scheduler_summary(table, 2, 1e-3)
    assert "**cosine** and **step** tie for the best validation Dice (0.2000)" in text
    table.loc["step", "best val Dice"] = 0.19
    assert "**cosine** reaches the best validation Dice (0.2000)" in scheduler_summary(table, 2, 1e-3)


def _curve(minutes, dice, budget=None):
    n = len(minutes)
    c = pd.DataFrame(
        {
            "epoch": range(1, n + 1),
            "train_minutes": minutes,
            "val_dice": dice,
            "dice": dice,
            "dice_median": dice,
            "dice_min": dice,
            "dice_dataset": dice,
        }
    )
    return c if budget is None else c.assign(budget=budget)


class _Run:
    def __init__(self, label, budget, epochs=2):
        self.label, self.budget, self.reused = label, budget, False
        self.config = TrainConfig(image_size=32)
        self.history = pd.DataFrame({"seconds": [6.0] * epochs})


def test_recipe_summary_reports_ahead_level_and_behind_not_a_zero_win():
    curves = {
        "original": _curve([0.1, 0.2], [0.2302, 0.5]),
        "recommended": _curve([0.1, 0.2], [0.23021, 0.4]),
    }
    table = dice_at_budgets(curves, [0.15, 0.25])
    minutes = dice_at_budgets(curves, [0.15, 0.25], column="train_minutes")
    runs = [_Run("original", None), _Run("recommended", None)]
    lines = recipe_summary(table, minutes, list(curves), runs, "cpu")
    text = "\n".join(lines)
    assert "+0.0000" not in text and "beats" not in text
    assert "`recommended` against `original`: ahead at 0, level at 1, behind at 1 of 2 budgets" in text
    assert "(Dice gap -0.1000 to 0.0000)" in text
    assert "Within 0.25 minutes the best is `original`: test Dice **0.5000**" in text
    level = dice_at_budgets(curves, [0.15])
    text = "\n".join(recipe_summary(level, minutes.iloc[:1], list(curves), runs, "cpu"))
    assert "level at 1, behind at 0 of 1 budget (level: equal to 4 decimals)" in text
    assert "`original` and `recommended` tie for the best test Dice, **0.2302**" in text
    # models that learned next to nothing (a busy machine's budgets bought an epoch each): said so
    assert "**No model reaches test Dice 0.5** (the runs trained 2 epochs): they learned too little" in text
    assert "No model reaches" not in "\n".join(lines)  # at 0.5 they did
    # a recipe's long run read at a shorter budget (the dashed curve) is in the table, but no recipe of its
    # own: never a leader tied with the model it is, nor a head-to-head
    early = "original: the 0.2-min run, stopped early"
    table = dice_at_budgets({**curves, early: curves["original"]}, [0.15, 0.25])
    text = "\n".join(recipe_summary(table, minutes, list(curves), runs, "cpu"))
    assert early not in text and "Within 0.25 minutes the best is `original`: test Dice **0.5000**" in text


# --- item 4: the N-minute models are those within N minutes ------------------------------------------
def test_the_budget_models_are_within_the_budget_or_marked_none():
    # `recommended` kept its models only past the 0.4-minute budget (as in a run that overran)
    curves = {
        "original": _curve([0.1, 0.35], [0.3, 0.4]),
        "recommended": _curve([0.21, 0.46], [0.5, 0.6], budget=[0.2, 0.4]),
    }
    final = models_at_budget(curves, 0.4)
    assert final.loc["original", "train minutes"] == 0.35 and final.loc["original", "epochs"] == 2
    assert pd.isna(final.loc["recommended", "test Dice"]) and pd.isna(final.loc["recommended", "epochs"])
    assert final.loc["recommended", "note"] == "none within budget"
    table = dice_at_budgets(curves, [0.2, 0.4])
    minutes = dice_at_budgets(curves, [0.2, 0.4], column="train_minutes")
    runs = [_Run("original", None), _Run("recommended", 0.2), _Run("recommended", 0.4)]
    text = "\n".join(recipe_summary(table, minutes, list(curves), runs, "cpu"))
    assert "`recommended` has no model saved within 0.2 and 0.4 minutes" in text
    assert "Within 0.4 minutes the best is `original`" in text


# --- item 5: the seconds to compare leave the first epoch's start-up out ---------------------------------
def test_scheduler_table_compares_epochs_after_the_first():
    table = scheduler_table(
        {
            "none": _history([0.1, 0.2, 0.3], [4.15, 0.07, 0.09]),
            "cosine": _history([0.1, 0.2, 0.2], [0.07] * 3),
        }
    )
    assert table["s/epoch after the first"].round(3).tolist() == [0.08, 0.07]
    assert table["seconds"].round(2).tolist() == [4.31, 0.21]  # history.csv's seconds, not wall time
    assert "one-off start-up" in scheduler_summary(table, 3, 1e-3)


# --- items 6, 7, 8: the parameters, checked before anything is timed --------------------------------------
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"budgets": "0.3,0.3"}, r"budgets: 0.3 given twice"),
        ({"budgets": "0.3, 0.30"}, r"budgets: 0.3 given twice"),
        ({"budgets": "-1"}, r"budgets: give positive minutes of training, e.g. 1,2,3; got -1"),
        ({"budgets": "0"}, r"budgets: give positive minutes .* got 0"),
        ({"budgets": "0,1"}, r"budgets: give positive minutes .* got 0"),
        (
            {"test_limit": -3},
            r"test_limit: give a whole number >= 1 \(0: the profile's study's own\), got -3",
        ),
        ({"every": -1}, r"checkpoint_every: give a whole number >= 1"),
        ({"min_epochs": -2}, r"min_epochs: give a whole number >= 0"),
        ({"recipes": None}, r"recipes must be comma-separated names"),  # papermill -p recipes None
    ],
)
def test_the_recipe_studys_parameters_are_checked(kw, message):
    with pytest.raises(ValueError, match=message):
        RECIPE_STUDIES["quick"].with_params(**kw)
    listed = RECIPE_STUDIES["quick"].with_params(recipes=["original", "recommended+tta=true"])  # papermill -y
    assert listed.recipes == "original,recommended+tta=true"


def test_bad_budgets_stop_the_plan_before_any_timing(tmp_path):
    ws = workspace("quick", tmp_path)  # no data: a timing probe would fail otherwise
    for budgets in ((-1.0,), (0.0, 1.0), (0.3, 0.3)):
        study = dataclasses.replace(RECIPE_STUDIES["quick"], budgets=budgets)
        with pytest.raises(ValueError, match="budgets: "):
            plan_recipe_study(ws.config, study, "unet", "quick")
    tiny = dataclasses.replace(RECIPE_STUDIES["tiny"], budgets=(-1.0,))  # fixed epochs: no timing either
    with pytest.raises(ValueError, match="budgets: give positive minutes"):
        plan_recipe_study(ws.config, tiny, "unet", "tiny")
    with pytest.raises(ValueError, match="budget minutes must be positive and finite, got inf"):
        epochs_for_budget(TrainConfig(), float("inf"), 1.0)


# --- item 9: Python's True, False and None in a recipe item ------------------------------------------
def test_recipe_items_take_pythons_true_false_and_none():
    assert parse_recipes("original+tta=True,recommended+tta=False+budget_minutes=None") == {
        "original+tta=True": ("original", {"tta": True}),
        "recommended+tta=False+budget_minutes=None": ("recommended", {"tta": False, "budget_minutes": None}),
    }


# --- item 10: whole numbers stay whole ---------------------------------------------------------------------
def test_epochs_are_saved_as_whole_numbers(tmp_path):
    table = scheduler_table(
        {"none": _history([0.1, 0.3], [1.0, 1.0]), "step": _history([0.2, 0.1], [1.0, 1.0])}
    )
    table.to_csv(tmp_path / "summary.csv")
    saved = (tmp_path / "summary.csv").read_text().splitlines()
    assert saved[0] == "," + ",".join(table.columns)
    assert saved[1].split(",")[2] == "2" and saved[2].split(",")[2] == "1"  # best epoch, not 2.0
    final = models_at_budget({"original": _curve([0.1, 0.2], [0.3, 0.4])}, 0.25)
    final.to_csv(tmp_path / "final.csv")
    row = (tmp_path / "final.csv").read_text().splitlines()[1].split(",")
    assert row[:3] == ["original", "2", "0.2"]


# --- the study scores at each run's threshold, and keeps each model's Dice per image --------------------
@pytest.mark.slow
def test_a_run_is_scored_at_its_threshold_and_keeps_dice_per_image(synthetic_root, tmp_path, capsys):
    from seglib.engine import evaluate, load_model, summarize
    from seglib.study import IMAGE_DICE_FILE

    out, tests = tmp_path / "runs", _tests(synthetic_root)
    cfg = _job(synthetic_root, out, threshold=0.05)
    run = run_recipe_job("original", None, cfg, tests, "cpu", keep_epoch_models=True)
    last = run.run_dir / "epochs" / "epoch_002.pt"
    assert last.is_file()
    at = {
        t: evaluate(load_model(last), tests(32), device="cpu", progress=False, threshold=t)
        for t in (0.05, 0.5)
    }
    means = {t: summarize(df).loc["original"].dice_mean for t, df in at.items()}
    assert means[0.05] != pytest.approx(means[0.5], abs=1e-6)  # else the test could not tell them apart
    assert run.curve.dice.iloc[-1] == pytest.approx(means[0.05], abs=1e-9)  # it scored at 0.5 before
    assert run.curve.threshold.tolist() == [0.05, 0.05]
    # each kept model's Dice per image, by name: the curve's means are theirs
    assert list(run.image_dice.columns) == ["name", "epoch_1", "epoch_2"]
    per_image = run.image_dice.set_index("name").epoch_2
    assert per_image.tolist() == pytest.approx(at[0.05].set_index("name").dice[per_image.index].tolist())
    assert run.image_dice[["epoch_1", "epoch_2"]].mean().tolist() == pytest.approx(run.curve.dice.tolist())
    assert (run.run_dir / IMAGE_DICE_FILE).is_file()
    again = run_recipe_job("original", None, cfg, tests, "cpu")  # reused: the table read back
    assert again.reused
    pd.testing.assert_frame_equal(again.image_dice, run.image_dice, check_dtype=False)


# --- "ahead" image by image: the paired interval over the test images -----------------------------------
class _Scored:
    """A run as run_recipe_job returns it: a curve and its models' Dice per image."""

    def __init__(self, label, budget, minutes, per_image):
        self.label, self.budget = label, budget
        self.curve = _curve(minutes, [sum(d) / len(d) for d in per_image])
        names = [f"img{i}" for i in range(len(per_image[0]))]
        columns = {f"epoch_{e}": d for e, d in enumerate(per_image, start=1)}
        self.image_dice = pd.DataFrame({"name": names, **columns})


def test_paired_at_budgets_compares_each_budgets_models_image_by_image():
    from seglib.study import describe_paired, paired_at_budgets

    base = [0.5, 0.6, 0.7, 0.8] * 5
    wiggle = [0.1, -0.1, 0.12, -0.1] * 5  # +0.005 on the mean, up and down by image: not resolved
    runs = [
        # one run, read along its models: at 0.5 min its first (0.4 min), at 1 min its second (+0.02)
        _Scored("original", None, [0.4, 0.9], [base, [b + 0.02 for b in base]]),
        _Scored("recommended", 0.5, [0.45], [[b + w for b, w in zip(base, wiggle, strict=True)]]),
        _Scored(
            "recommended", 1.0, [0.95], [[b + 0.05 for b in base]]
        ),  # the 1-minute run: +0.05 on every image
    ]
    paired = paired_at_budgets(runs, [0.5, 1.0], "original")
    assert paired["budget (min)"].tolist() == [0.5, 1.0] and set(paired.recipe) == {"recommended"}
    one = paired.set_index("budget (min)").loc[1.0]
    assert (one.gap, one.low, one.high, one.images, one.higher, one.lower) == pytest.approx(
        (0.03, 0.03, 0.03, 20, 20, 0)
    )
    half = paired.set_index("budget (min)").loc[0.5]
    assert half.gap == pytest.approx(0.005) and half.low < 0 < half.high
    said = describe_paired(paired, "recommended", "original")
    assert "higher at 1, lower at 0 of 2 budgets" in said
    assert "do not tell them apart at 0.5 min (+0.0050," in said
    # in the notebook's summary, beside the means' head-to-head
    curves = {
        "original": runs[0].curve,
        "recommended": pd.concat([r.curve.assign(budget=r.budget) for r in runs[1:]]),
    }
    table = dice_at_budgets(curves, [0.5, 1.0])
    minutes = dice_at_budgets(curves, [0.5, 1.0], column="train_minutes")
    named = [_Run("original", None), _Run("recommended", 0.5), _Run("recommended", 1.0)]
    text = "\n".join(recipe_summary(table, minutes, list(curves), named, "cpu", paired))
    assert "ahead at 2, level at 0, behind at 0 of 2 budgets" in text and said in text
    # a run scored before the per-image table was kept: that budget is left out, not guessed
    runs[2].image_dice = None
    assert paired_at_budgets(runs, [0.5, 1.0], "original")["budget (min)"].tolist() == [0.5]


def test_a_fixed_epoch_study_says_its_line_is_where_the_longest_run_ended_not_a_budget():
    """Without budgets (a fixed-epoch study: the tiny profile, `epochs=N`), 06 drew a dotted line called
    "training budgets" while it had printed "budgets []"."""
    from seglib.plots import plot_dice_versus_minutes
    from seglib.study import study_curves

    runs = [_Run("original", None), _Run("recommended", None)]
    runs[0].curve, runs[1].curve = _curve([0.05, 0.1], [0.2, 0.3]), _curve([0.04, 0.08], [0.25, 0.35])
    fixed = study_curves(runs, [], None)
    assert fixed.fixed_epochs and fixed.marks == [0.11] and "fixed epochs" in fixed.marks_label
    fig = plot_dice_versus_minutes(fixed.curves, fixed.marks, marks_label=fixed.marks_label)
    assert fig.axes[0].get_legend().get_texts()[-1].get_text() == "where the longest run ended (fixed epochs)"
    timed = [_Run("original", 0.1)]
    timed[0].curve = _curve([0.05, 0.1], [0.2, 0.3])
    budgeted = study_curves(timed, [0.1], 0.1)
    assert not budgeted.fixed_epochs and budgeted.marks_label == "training budgets"


def test_a_run_begun_on_an_older_seglibs_samples_is_not_reused(tmp_path):
    """A study run trained before seglib's masks were resized pixel-centred was reused as today's."""
    from seglib.study.runs import same_config

    cfg = TrainConfig(epochs=3, dataset="oxford-pet")
    cfg.save(tmp_path / "config.json")
    assert not same_config(cfg, tmp_path)  # no environment.json: a run from before 2026-12-05
    (tmp_path / "environment.json").write_text(json.dumps([{"started": "2026-12-04T10:00:00+00:00"}]))
    assert not same_config(cfg, tmp_path)
    # begun after that change and before the next, which changed a folder's masks only
    (tmp_path / "environment.json").write_text(json.dumps([{"started": "2026-12-05T12:00:00+00:00"}]))
    for dataset, reused in (("oxford-pet", True), ("folder", False)):
        cfg = TrainConfig(epochs=3, dataset=dataset)
        cfg.save(tmp_path / "config.json")
        assert same_config(cfg, tmp_path) == reused, dataset


def test_an_auto_run_between_the_changes_counts_as_of_the_kind_auto_takes(synthetic_root, tmp_path):
    """An "auto" run begun between the two changes, before starts recorded their kind, was trained anew by
    notebook 06 on the real data too: the folder-only change counted for any kind."""
    from seglib.study.runs import same_config

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "environment.json").write_text(json.dumps([{"started": "2026-12-05T12:00:00+00:00"}]))
    folder = make_synthetic_folder(tmp_path / "folder", n=4)
    for data_root, reused in ((synthetic_root, True), (folder, False), (tmp_path / "nothing", True)):
        cfg = TrainConfig(epochs=3, dataset="auto", data_root=str(data_root))
        cfg.save(run_dir / "config.json")
        assert same_config(cfg, run_dir) == reused, data_root
    # a kind the starts recorded is the kind, wherever data_root points today
    (run_dir / "environment.json").write_text(
        json.dumps([{"started": "2026-12-05T12:00:00+00:00", "data": "oxford-pet"}])
    )
    cfg = TrainConfig(epochs=3, dataset="auto", data_root=str(folder))
    cfg.save(run_dir / "config.json")
    assert same_config(cfg, run_dir)
    # two kinds recorded (data_root changed kind between resumes): every kind's changes count
    starts = [{"started": "2026-12-05T12:00:00+00:00", "data": k} for k in ("folder", "oxford-pet")]
    (run_dir / "environment.json").write_text(json.dumps(starts))
    cfg = TrainConfig(epochs=3, dataset="auto", data_root=str(synthetic_root))
    cfg.save(run_dir / "config.json")
    assert not same_config(cfg, run_dir)


@pytest.mark.slow
def test_a_study_says_why_it_trains_anew_beside_a_run_on_older_samples(synthetic_root, tmp_path, capsys):
    out = tmp_path / "runs"
    first = run_recipe_job("original", None, _job(synthetic_root, out), _tests(synthetic_root), "cpu")
    (first.run_dir / "environment.json").write_text(json.dumps([{"started": "2026-12-04T10:00:00+00:00"}]))
    capsys.readouterr()
    again = run_recipe_job("original", None, _job(synthetic_root, out), _tests(synthetic_root), "cpu")
    assert not again.reused and again.run_dir.name == f"{first.run_dir.name}-2"
    assert (
        f"{first.run_dir.name}: trained before with this config, on the samples of an older seglib"
        in capsys.readouterr().out
    )


def test_a_run_its_patience_stopped_is_finished_and_one_of_unknown_samples_is_not_reused(tmp_path):
    """A study rerun trained a run its patience had ended again; a run whose environment.json cannot be
    read (what it trained on unknown) passed for one of today's samples."""
    from seglib.study.runs import is_finished, same_config

    cfg = TrainConfig(epochs=30, patience=2, dataset="oxford-pet")
    cfg.save(tmp_path / "config.json")
    history = pd.DataFrame({"epoch": [1, 2, 3], "val_dice": [0.5, 0.4, 0.3]})
    history.to_csv(tmp_path / "history.csv", index=False)
    assert is_finished(tmp_path)  # 2 epochs without a better Dice than epoch 1's
    history.head(2).to_csv(tmp_path / "history.csv", index=False)
    assert not is_finished(tmp_path)  # 1 epoch: patience not spent, stopped while training
    (tmp_path / "environment.json").write_text(json.dumps([{"started": "2026-12-07T12:00:00+00:00"}]))
    assert same_config(cfg, tmp_path)
    (tmp_path / "environment.json").write_text("[{not json")
    assert not same_config(cfg, tmp_path)

"""The recommended recipe's parts: weight EMA, recipe settings, per-epoch checkpoints, resume with EMA."""

import dataclasses

import pandas as pd
import pytest
import torch
from conftest import tiny_train_config
from torch import nn

from seglib.engine import (
    SCHEDULERS,
    ModelEMA,
    TrainConfig,
    fit,
    load_checkpoint,
    load_model,
)
from seglib.engine.train import TrainingInterrupted

# The tiny config with every part of the recommended recipe on: 14 images (4 steps an epoch), 3 epochs.
RECIPE = dict(
    epochs=3,
    train_limit=14,
    lr=3e-3,
    scheduler="onecycle",
    run_name="r",
    ema_decay=0.9,
    scale_jitter=0.2,
    copy_paste=0.5,
    tta=True,
    loss="bce_dice",
)


def cfg_for(root, out, **kw) -> TrainConfig:
    return tiny_train_config(root, out, **{**RECIPE, **kw})


# --- EMA ----------------------------------------------------------------------------------------------
def test_ema_update_known_values():
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    ema = ModelEMA(model, decay=0.9, warmup=False)
    with torch.no_grad():
        model[0].weight.fill_(3.0)
        model[1].running_mean.fill_(2.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    assert ema.module[0].weight.item() == pytest.approx(0.9 * 1 + 0.1 * 3)  # 1.2
    assert ema.module[1].running_mean.item() == pytest.approx(0.1 * 2)  # float buffers are averaged
    assert ema.module[1].num_batches_tracked.item() == 7  # integer buffers are copied
    ema.update(model)
    assert ema.module[0].weight.item() == pytest.approx(0.9 * 1.2 + 0.1 * 3)
    assert not ema.module[0].weight.requires_grad and not ema.module.training
    assert model[0].weight.item() == 3.0  # the source is untouched


def test_ema_warmup_follows_the_weights_early():
    model = nn.Linear(1, 1, bias=False)
    ema = ModelEMA(model, decay=0.99)
    assert ema.current_decay() == pytest.approx(0.1)  # update 1: 1 / (1 + 9)
    with torch.no_grad():
        model.weight.fill_(5.0)
    w0 = ema.module.weight.item()
    ema.update(model)
    assert ema.module.weight.item() == pytest.approx(0.1 * w0 + 0.9 * 5.0)
    ema.updates = 10_000
    assert ema.current_decay() == 0.99  # capped at the decay


def test_ema_state_round_trip():
    model = nn.Linear(2, 1)
    ema = ModelEMA(model, decay=0.5)
    ema.update(model)
    other = ModelEMA(nn.Linear(2, 1), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and torch.equal(other.module.weight, ema.module.weight)


@pytest.mark.parametrize("decay", [1.0, -0.1, 0.0])
def test_ema_rejects_a_decay_outside_0_1(decay):
    with pytest.raises(ValueError, match="ema decay must be in"):
        ModelEMA(nn.Linear(1, 1), decay)


# --- the recipe's settings --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"ema_decay": 1.0}, r"ema_decay must be 0 \(off\) or in \(0, 1\)"),
        ({"scale_jitter": 1.5}, r"scale_jitter must be in \[0, 1\)"),
        ({"copy_paste": -0.1}, r"copy_paste must be a probability in \[0, 1\]"),
        ({"checkpoint_every": -1}, r"checkpoint_every must be an integer >= 0"),
        ({"tta": "yes"}, r"tta must be True or False"),
    ],
)
def test_recipe_settings_are_checked(kw, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kw)


# --- training with the recipe -------------------------------------------------------------------------
@pytest.mark.slow
def test_ema_run_validates_and_saves_the_averaged_weights(synthetic_root, tmp_path):
    result = fit(cfg_for(synthetic_root, tmp_path, checkpoint_every=2))
    run = result.run_dir
    # Epoch models for Dice-versus-time curves: every 2nd epoch and the last one.
    assert sorted(p.name for p in (run / "epochs").iterdir()) == ["epoch_002.pt", "epoch_003.pt"]
    e3 = load_checkpoint(run / "epochs" / "epoch_003.pt")
    assert e3["epoch"] == 3 and e3["train_seconds"] == pytest.approx(result.history.seconds.sum())
    assert load_checkpoint(run / "epochs" / "epoch_002.pt")["train_seconds"] < e3["train_seconds"]
    last = load_checkpoint(run / "last.pt")
    # The returned model and the epoch models are the EMA; last.pt keeps the raw weights and the EMA apart.
    for name, t in result.model.state_dict().items():
        assert torch.equal(t, e3["model"][name]) and torch.equal(t, last["ema"]["module"][name]), name
    raw = last["model"]["inc.0.weight"]
    assert not torch.equal(raw, e3["model"]["inc.0.weight"])
    assert last["ema"]["updates"] == 3 * 4  # one update per optimizer step
    best = load_model(run / "best.pt")
    assert isinstance(best, type(result.model))


@pytest.mark.slow
def test_validation_scores_the_ema_model_with_tta(synthetic_root, tmp_path):
    kw = dict(epochs=1, train_limit=8, run_name=None)
    plain = fit(cfg_for(synthetic_root, tmp_path / "a", ema_decay=0.0, tta=False, **kw)).history
    ema = fit(cfg_for(synthetic_root, tmp_path / "b", tta=False, **kw)).history
    ema_tta = fit(cfg_for(synthetic_root, tmp_path / "c", **kw)).history
    # Same training (the EMA does not touch it), different validated models.
    assert plain.train_loss.tolist() == ema.train_loss.tolist() == ema_tta.train_loss.tolist()
    assert plain.val_loss[0] != ema.val_loss[0] != ema_tta.val_loss[0]


@pytest.mark.slow
def test_copy_paste_changes_the_training_batches_only_when_augmenting(synthetic_root, tmp_path):
    kw = dict(epochs=1, train_limit=8, ema_decay=0.0, scale_jitter=0.0, tta=False, run_name=None)
    off = fit(cfg_for(synthetic_root, tmp_path / "a", copy_paste=0.0, **kw)).history
    on = fit(cfg_for(synthetic_root, tmp_path / "b", **kw)).history
    plain = fit(cfg_for(synthetic_root, tmp_path / "c", copy_paste=0.0, augment=False, **kw)).history
    plain_cp = fit(cfg_for(synthetic_root, tmp_path / "d", augment=False, **kw)).history
    assert on.train_loss[0] != off.train_loss[0]
    assert plain.train_loss[0] == plain_cp.train_loss[0]  # augment=False turns every augmentation off


@pytest.mark.slow
def test_resumed_recipe_run_equals_uninterrupted_run(synthetic_root, tmp_path, loss_at_step):
    """EMA, zoom and copy-paste augmentation, BCE + Dice and TTA validation survive a Ctrl-C mid-epoch bit for bit."""
    whole = fit(cfg_for(synthetic_root, tmp_path / "a"))
    cfg = cfg_for(synthetic_root, tmp_path / "b")
    with pytest.raises(TrainingInterrupted):
        fit(cfg, loss_fn=loss_at_step("ctrl_c", 6, loss=cfg.loss))
    resumed = fit(cfg_for(synthetic_root, tmp_path / "b"), resume=True)
    cols = [c for c in whole.history.columns if c != "seconds"]
    pd.testing.assert_frame_equal(whole.history[cols], resumed.history[cols], check_exact=True)
    a, b = load_checkpoint(whole.run_dir / "last.pt"), load_checkpoint(resumed.run_dir / "last.pt")
    assert a["ema"]["updates"] == b["ema"]["updates"] == 12
    for part in ("model", "ema"):
        sa = a[part] if part == "model" else a[part]["module"]
        sb = b[part] if part == "model" else b[part]["module"]
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (part, k)


# --- the study's helpers -------------------------------------------------------------------------------
def test_parse_recipes():
    from seglib.study import parse_recipes

    assert parse_recipes("original, recommended+ema_decay=0+border=ignore+tta=false") == {
        "original": ("original", {}),
        "recommended+ema_decay=0+border=ignore+tta=false": (
            "recommended",
            {"ema_decay": 0, "border": "ignore", "tta": False},
        ),
    }
    with pytest.raises(ValueError, match=r"unknown recipe 'best' in 'best\+lr=1'"):
        parse_recipes("best+lr=1")
    with pytest.raises(ValueError, match=r"'emadecay=0' in 'recommended\+emadecay=0' is not key=value"):
        parse_recipes("recommended+emadecay=0")
    with pytest.raises(ValueError, match="no recipe in"):
        parse_recipes(" , ")
    # what the notebook's parameters or the study set: refused, naming what sets it (it failed later with a
    # TypeError, or was replaced without a word)
    with pytest.raises(
        ValueError, match=r"'model=resnet34_unet' in .*: the study sets model \(notebook 06's model_name\)"
    ):
        parse_recipes("recommended+model=resnet34_unet")
    with pytest.raises(ValueError, match=r"the study sets run_name"):
        parse_recipes("original+run_name=x")
    with pytest.raises(ValueError, match=r"lr is set twice in 'recommended\+lr=0.001\+lr=0.002'; keep one"):
        parse_recipes("recommended+lr=0.001+lr=0.002")


def test_dice_at_budgets_reads_the_last_model_within_each_budget():
    from seglib.study import dice_at_budgets

    a = pd.DataFrame({"train_minutes": [1.0, 2.0, 3.0], "dice": [0.5, 0.6, 0.7]})
    b = pd.DataFrame({"train_minutes": [1.5, 2.9], "dice": [0.8, 0.9]})
    table = dice_at_budgets({"a": a, "b": b}, [1.0, 2.5, 3.0])
    assert table["a"].tolist() == [0.5, 0.6, 0.7]
    assert table["b"].isna().tolist() == [True, False, False] and table["b"].tolist()[1:] == [0.8, 0.9]
    # One run per budget: the run planned for the budget counts if it ended within it.
    per_budget = pd.DataFrame(
        {"budget": [1.0, 3.0, 5.0], "train_minutes": [1.05, 2.9, 4.9], "dice": [0.7, 0.9, 0.95]}
    )
    assert dice_at_budgets({"c": per_budget}, [1.0, 2.5, 3.0, 5.0])["c"].tolist()[2:] == [0.9, 0.95]
    assert dice_at_budgets({"c": per_budget}, [1.0, 2.5])["c"].isna().all()  # overran; none planned


def test_a_run_past_its_budget_is_read_at_its_last_model_within_it():
    from seglib.study import budget_reading, dice_at_budgets

    run = pd.DataFrame({"epoch": [88, 90, 92, 95], "train_minutes": [11.5, 11.74, 12.02, 12.42]})
    run["dice"] = [0.85, 0.855, 0.856, 0.855]
    row = budget_reading(run, 12.0)
    assert row.epoch.tolist() == [90] and row.budget.tolist() == [12.0]
    assert dice_at_budgets({"r": row}, [12.0])["r"].tolist() == [0.855]
    late = budget_reading(run.iloc[[-1]], 12.0)  # kept only its last model: over the budget, left out
    assert late.epoch.tolist() == [95] and dice_at_budgets({"r": late}, [12.0])["r"].isna().all()


@pytest.mark.slow
def test_epochs_for_budget(synthetic_root, tmp_path):
    from seglib.study import epochs_for_budget, estimate_epoch_seconds

    cfg = cfg_for(synthetic_root, tmp_path / "runs", checkpoint_every=1)
    secs = estimate_epoch_seconds(cfg)  # two real epochs, in a folder of their own
    assert secs > 0 and not (tmp_path / "runs").exists()
    assert epochs_for_budget(cfg, 10 * secs / 60, epoch_seconds=secs) == 10
    assert epochs_for_budget(cfg, 0.001, epoch_seconds=secs) == 1  # at least one epoch
    with pytest.raises(ValueError, match="budget minutes must be positive and finite"):
        epochs_for_budget(cfg, 0.0, epoch_seconds=secs)


def test_the_model_at_a_budget_is_the_last_saved_within_it():
    """One run per budget: that run's last model within its budget; one run read along (no budget, or a
    budget column left empty as in dice_vs_minutes.csv): its last model within the budget; else None."""
    from seglib.study import model_at_budget

    per_budget = pd.DataFrame(
        {"budget": [1.0, 1.0, 2.0, 2.0], "train_minutes": [0.5, 0.9, 1.0, 2.1], "dice": [0.1, 0.2, 0.3, 0.4]}
    )
    assert model_at_budget(per_budget, 1.0).dice == 0.2
    assert model_at_budget(per_budget, 2.0).dice == 0.3  # 2.1 minutes is past the budget
    along = pd.DataFrame(
        {"budget": [float("nan")] * 3, "train_minutes": [0.5, 1.0, 2.0], "dice": [0.1, 0.2, 0.3]}
    )
    assert model_at_budget(along, 1.5).dice == 0.2
    assert model_at_budget(along.drop(columns="budget"), 2.0).dice == 0.3
    assert model_at_budget(along, 0.25) is None


def test_a_budget_of_exactly_n_epochs_buys_n():
    """minutes = N * seconds / 60 can divide back to N - 1e-15 in floats (seconds 3.4536...: 9.999...)."""
    from seglib.study import epochs_for_budget

    for secs in (3.4536082474226806, 3.4742268041237114, 6.0, 0.1):
        assert epochs_for_budget(TrainConfig(), 10 * secs / 60, epoch_seconds=secs) == 10


@pytest.mark.slow
def test_fit_to_budget_shrinks_the_images_until_the_schedule_gets_its_epochs(synthetic_root, tmp_path):
    from seglib.study import fit_to_budget

    cfg = cfg_for(synthetic_root, tmp_path / "runs", image_size=64)
    secs = {64: 6.0, 48: 4.0, 32: 1.5}  # timed epochs per size: nothing is run
    fitted = fit_to_budget(cfg, 1.0, epoch_seconds=secs)
    assert (fitted.image_size, fitted.epochs) == (64, 10)  # no min_epochs: the profile's size
    fitted = fit_to_budget(cfg, 1.0, min_epochs=12, sizes=[32, 48, 96], epoch_seconds=secs)
    assert (fitted.image_size, fitted.epochs) == (48, 15)  # the largest with 12 epochs (96: above 64)
    fitted = fit_to_budget(cfg, 1.0, min_epochs=100, sizes=[32, 48], epoch_seconds=secs)
    assert (fitted.image_size, fitted.epochs) == (32, 40)  # none gives 100: the smallest
    fitted = fit_to_budget(cfg, 12.0, min_epochs=12, sizes=[32, 48], epoch_seconds=secs)
    assert (fitted.image_size, fitted.epochs) == (64, 120)  # a long budget keeps the profile's size
    assert fitted.lr == cfg.lr and fitted.seed == cfg.seed  # nothing else changes
    assert fitted.budget_minutes == 12.0  # the run re-plans its epochs within the budget as it trains
    assert fit_to_budget(cfg, 12.0, epoch_seconds=secs, replan=False).budget_minutes is None
    # `shrunk` is for a run short of min_epochs at every size; a smaller size that gets them keeps the rest
    plain = {"scale_jitter": 0.0, "copy_paste": 0.0}
    cfg = dataclasses.replace(cfg, scale_jitter=0.25)
    fitted = fit_to_budget(cfg, 1.0, min_epochs=12, sizes=[48], epoch_seconds=secs, shrunk=plain)
    assert (fitted.image_size, fitted.epochs, fitted.scale_jitter) == (48, 15, 0.25)
    fitted = fit_to_budget(cfg, 1.0, min_epochs=20, sizes=[48], epoch_seconds=secs, shrunk=plain)
    assert (fitted.image_size, fitted.epochs, fitted.scale_jitter, fitted.copy_paste) == (48, 15, 0.0, 0.0)
    fitted = fit_to_budget(cfg, 12.0, min_epochs=12, sizes=[48], epoch_seconds=secs, shrunk=plain)
    assert (fitted.image_size, fitted.scale_jitter) == (64, 0.25)
    # progressive: the size that gets its epochs (48 px: 15) gives way to the one above it trained after the
    # smaller sizes. At 64 px after 32 and 48, a third each: 3.83 s, 15 in a minute
    fitted = fit_to_budget(cfg, 1.0, min_epochs=12, sizes=[32, 48], epoch_seconds=secs, progressive=True)
    assert (fitted.image_size, fitted.epochs, fitted.progressive_sizes) == (64, 15, [32, 48])
    assert fitted.progressive_share == pytest.approx(2 / 3)
    fitted = fit_to_budget(cfg, 1.0, min_epochs=20, sizes=[32, 48], epoch_seconds=secs, progressive=True)
    assert (fitted.image_size, fitted.epochs, fitted.progressive_sizes) == (48, 21, [32])  # 2.75 s an epoch
    fitted = fit_to_budget(cfg, 1.0, min_epochs=22, sizes=[32, 48], epoch_seconds=secs, progressive=True)
    # 32 px gets 22 (40), its ladder one size up does not (21): the ladder even so, not 32 px alone
    assert (fitted.image_size, fitted.epochs, fitted.progressive_sizes) == (48, 21, [32])
    assert fitted.scale_jitter == 0.25  # not shrunk: a size got its epochs
    # none gets 50: the smallest first, the size above it last (half the epochs each), with `shrunk`
    fitted = fit_to_budget(cfg, 1.0, 50, sizes=[32, 48], epoch_seconds=secs, shrunk=plain, progressive=True)
    assert (fitted.image_size, fitted.epochs, fitted.progressive_sizes) == (48, 21, [32])
    assert (fitted.progressive_share, fitted.scale_jitter) == (0.5, 0.0)
    fitted = fit_to_budget(cfg, 1.0, 50, sizes=[32, 48], epoch_seconds=secs, shrunk=plain)
    assert (fitted.image_size, fitted.epochs, fitted.progressive_sizes) == (32, 40, None)  # not progressive
    fitted = fit_to_budget(cfg, 12.0, min_epochs=12, sizes=[32, 48], epoch_seconds=secs, progressive=True)
    assert (fitted.image_size, fitted.epochs, fitted.progressive_sizes) == (64, 120, None)  # epochs enough
    probed: dict[int, float] = {}
    fitted = fit_to_budget(cfg, 0.5, min_epochs=1, sizes=[32], epoch_seconds=probed)
    assert list(probed) == [64] and probed[64] > 0  # a missing size is timed (two real epochs), once


# --- the studies' plans (notebooks 05 and 06): nothing is trained or timed ------------------------------
def workspace(profile, tmp_path):
    """A notebook's Workspace on data that need not exist: planning reads none."""
    from seglib.workspace import Workspace

    data = tmp_path / "data"
    return Workspace(str(data), "oxford-pet", data, "oxford-pet", profile, tmp_path / "results")


def test_every_profile_has_both_studies():
    from seglib.engine import PROFILES
    from seglib.study import RECIPE_STUDIES, SCHEDULER_STUDIES

    assert set(SCHEDULER_STUDIES) == set(RECIPE_STUDIES) == set(PROFILES)


def test_scheduler_plan_one_config_per_scheduler(tmp_path):
    from seglib.study import plan_scheduler_study

    ws = workspace("quick", tmp_path)
    plan = plan_scheduler_study(ws.config, "quick", "unet", "none, cosine,step", lr=3e-3, seed=7, n_train=17)
    assert list(plan.configs) == ["none", "cosine", "step"] and plan.epochs == 6
    # 17 images in batches of 8: the last batch of one image is dropped (ceil would say 3)
    assert plan.steps_per_epoch == 2
    for s, cfg in plan.configs.items():
        assert (cfg.scheduler, cfg.lr, cfg.seed, cfg.step_size, cfg.run_name) == (
            s,
            3e-3,
            7,
            2,
            f"schedulers-{s}-quick",
        )
        assert (cfg.image_size, cfg.train_limit, cfg.epochs, cfg.model_kwargs) == (
            96,
            120,
            6,
            {"base_channels": 8},
        )
        assert cfg.output_dir == str(ws.runs) and cfg.ema_decay == 0.99  # the quick preset's recipe
    resnet = plan_scheduler_study(ws.config, "quick", "resnet34_unet", "multistep", epochs=9, n_train=16)
    cfg = resnet.configs["multistep"]
    assert (cfg.model_kwargs, cfg.epochs, cfg.step_size, resnet.steps_per_epoch) == ({}, 9, 3, 2)
    tiny = plan_scheduler_study(workspace("tiny", tmp_path).config, "tiny", "unet", n_train=16)
    assert list(tiny.configs) == list(SCHEDULERS) == ["none", "cosine", "onecycle", "step", "multistep"]
    assert (tiny.epochs, tiny.configs["step"].step_size, tiny.steps_per_epoch) == (2, 1, 4)
    with pytest.raises(ValueError, match=r"unknown schedulers \['plateau'\]"):
        plan_scheduler_study(ws.config, "quick", "unet", "cosine,plateau", n_train=17)
    listed = plan_scheduler_study(ws.config, "quick", "unet", ["cosine", "step"], n_train=17)  # papermill -y
    assert list(listed.configs) == ["cosine", "step"]


def test_scheduler_plan_counts_the_loaders_steps(synthetic_root, tmp_path):
    from seglib.engine import config_from_profile
    from seglib.study import plan_scheduler_study

    def config(model, recipe=None, **kw):  # 17 training images in batches of 4
        where = dict(data_root=str(synthetic_root), dataset="oxford-pet", output_dir=str(tmp_path / "runs"))
        return config_from_profile("tiny", recipe, model=model, train_limit=17, cache=False, **where, **kw)

    assert plan_scheduler_study(config, "tiny", "unet", "cosine").steps_per_epoch == 4


def test_recipe_study_takes_the_notebooks_parameters_where_set():
    from seglib.study import RECIPE_STUDIES

    study = RECIPE_STUDIES["recommended"]
    assert study.with_params() == study
    changed = study.with_params("recommended", "6, 3", 0, 4, 20)
    assert (changed.recipes, changed.budgets, changed.min_epochs, changed.every, changed.test_limit) == (
        "recommended",
        (6.0, 3.0),
        0,
        4,
        20,
    )
    assert changed.sizes == study.sizes and RECIPE_STUDIES["tiny"].with_params().test_limit == 10


def test_tiny_recipe_plan_fixed_epochs(tmp_path):
    from seglib.study import RECIPE_STUDIES, plan_recipe_study

    ws = workspace("tiny", tmp_path)
    plan = plan_recipe_study(ws.config, RECIPE_STUDIES["tiny"], "unet", "tiny", seed=3)
    assert (plan.marks, plan.budget) == ([], None)
    (a, ba, original), (b, bb, tta) = plan.jobs
    assert (a, ba, b, bb) == ("original", None, "recommended+tta=true", None)
    assert (original.run_name, tta.run_name) == (
        "recipe-original-fixed-unet-s3-tiny",
        "recipe-recommended_tta-true-fixed-unet-s3-tiny",
    )
    assert (original.epochs, original.checkpoint_every, original.seed, original.overwrite) == (2, 1, 3, False)
    assert (original.lr, original.scheduler, original.tta) == (1e-4, "none", False)
    assert (tta.lr, tta.scheduler, tta.ema_decay, tta.tta, tta.epochs) == (2e-3, "onecycle", 0.99, True, 2)
    assert plan.table["est. s/epoch"].isna().all() and list(plan.table.index.names) == [
        "recipe",
        "budget (min)",
    ]
    assert (
        plan_recipe_study(ws.config, RECIPE_STUDIES["tiny"], "unet", "tiny", epochs=5).jobs[0][2].epochs == 5
    )
    no_budget = dataclasses.replace(RECIPE_STUDIES["quick"], budgets=())
    with pytest.raises(ValueError, match="budgets: give training minutes"):  # before any timing
        plan_recipe_study(ws.config, no_budget, "unet", "quick")


def test_recipe_run_names_are_plain_folder_names_whatever_the_items_set(tmp_path):
    """An item's value with a path in it named a run folder inside a folder (a bare Errno 2), a long item
    one over the file system's 255 bytes."""
    from seglib.study import RECIPE_STUDIES, plan_recipe_study

    ws = workspace("tiny", tmp_path)
    items = [
        f"original+cache_dir={tmp_path}/c",
        f"original+cache_dir={'c' * 250}1",
        f"original+cache_dir={'c' * 250}2",
    ]
    study = dataclasses.replace(RECIPE_STUDIES["tiny"], recipes=",".join(items))
    names = [run.run_name for _, _, run in plan_recipe_study(ws.config, study, "unet", "tiny").jobs]
    assert names[0] == f"recipe-original_cache_dir-{str(tmp_path).replace('/', '-')}-c-fixed-unet-s42-tiny"
    assert len(set(names)) == 3 and all(len(n.encode()) <= 223 for n in names)  # long ones told apart


def test_quick_recipe_plan_studies_the_narrow_unet_unless_told_otherwise(tmp_path):
    from seglib.study import RECIPE_STUDIES, plan_recipe_study

    ws = workspace("quick", tmp_path)
    study = RECIPE_STUDIES["quick"]
    secs = {"original": {96: 3.0}, "recommended": {96: 3.0}}  # 3 s an epoch: 5 epochs a quarter minute
    plan = plan_recipe_study(ws.config, study, study.model, "quick", epoch_seconds=secs)
    got = [(lb, b, c.model, c.model_kwargs, c.image_size, c.train_limit, c.epochs) for lb, b, c in plan.jobs]
    narrow = {"base_channels": 8}
    assert got == [
        ("original", None, "unet", narrow, 96, 160, 10),  # one run of the longest budget, read along
        ("recommended", 0.25, "unet", narrow, 96, 160, 5),
        ("recommended", 0.5, "unet", narrow, 96, 160, 10),
    ]
    # Another model keeps its own preset's kwargs (a width is the UNet's), with the study's other settings.
    resnet = plan_recipe_study(ws.config, study, "resnet34_unet", "quick", epoch_seconds=secs)
    assert {(c.model, str(c.model_kwargs), c.image_size, c.train_limit) for _, _, c in resnet.jobs} == {
        ("resnet34_unet", "{}", 96, 160)
    }


def test_a_scheduled_recipe_item_keeps_the_size_it_sets(tmp_path):
    """`recommended+image_size=128` at 1 minute buys 6 epochs, below the schedule's 40: still 128 px."""
    from seglib.study import RECIPE_STUDIES, plan_recipe_study

    study = RECIPE_STUDIES["recommended"].with_params("recommended+image_size=128", "1,12")
    secs = {"recommended+image_size=128": {s: 10.0 for s in (160, 128, 96, 64)}}
    plan = plan_recipe_study(
        workspace("recommended", tmp_path).config, study, "unet", "recommended", epoch_seconds=secs
    )
    assert [(b, c.image_size, c.epochs, c.progressive_sizes) for _, b, c in plan.jobs] == [
        (1.0, 128, 6, None),
        (12.0, 128, 72, None),
    ]


def test_recommended_recipe_plan_fits_each_budget(tmp_path):
    from seglib.study import RECIPE_STUDIES, plan_recipe_study

    ws = workspace("recommended", tmp_path)
    secs = {"original+image_size=128": {128: 10.0}, "recommended": {160: 10.0, 128: 6.0, 96: 4.0, 64: 2.0}}
    plan = plan_recipe_study(
        ws.config, RECIPE_STUDIES["recommended"], "unet", "recommended", epoch_seconds=secs
    )
    assert (plan.marks, plan.budget) == ([1.0, 2.0, 3.0, 6.0, 12.0], 12.0)
    (label, b, original), *scheduled = plan.jobs
    # The original has no schedule: one 12-minute run, read along its kept models.
    assert (label, b, original.image_size, original.epochs, original.checkpoint_every) == (
        "original+image_size=128",
        None,
        128,
        72,
        2,
    )
    assert (original.run_name, original.scale_jitter, original.model_kwargs) == (
        "recipe-original_image_size-128-12min-unet-s42-recommended",
        0.0,
        {"base_channels": 16},
    )
    # The recommended recipe: one run per budget, at the largest size that gives 40 epochs, or the one above
    # it trained after the smaller sizes where that gives 40 too (2 minutes: 96 px after 64, 3 s an epoch);
    # where none does (1 minute), the smallest and the size above it (half the epochs each), without the UNet's
    # zoom and dropout.
    got = [
        (
            lb,
            b,
            c.image_size,
            c.progressive_sizes,
            c.epochs,
            c.scale_jitter,
            c.model_kwargs,
            c.checkpoint_every,
        )
        for lb, b, c in scheduled
    ]
    plain, regular = {"base_channels": 16}, {"base_channels": 16, "dropout": 0.2}
    assert got == [
        ("recommended", 1.0, 96, [64], 20, 0.0, plain, 20),
        ("recommended", 2.0, 96, [64], 40, 0.25, regular, 40),
        ("recommended", 3.0, 128, [64, 96], 45, 0.25, regular, 45),
        ("recommended", 6.0, 160, [64, 96, 128], 65, 0.25, regular, 65),
        ("recommended", 12.0, 160, None, 72, 0.25, regular, 2),  # the longest run keeps every other epoch
    ]
    assert [c.run_name for _, _, c in scheduled][0] == "recipe-recommended-1min-unet-s42-recommended"
    assert [c.budget_minutes for _, _, c in plan.jobs] == [12.0, 1.0, 2.0, 3.0, 6.0, 12.0]  # each re-plans
    item = RECIPE_STUDIES["recommended"].with_params(recipes="recommended+budget_minutes=null", budgets="6")
    ((_, _, once),) = plan_recipe_study(
        ws.config,
        item,
        "unet",
        "recommended",
        epoch_seconds={"recommended+budget_minutes=null": secs["recommended"]},
    ).jobs
    assert (once.budget_minutes, once.epochs, once.image_size) == (None, 65, 160)  # planned once
    table = plan.table.reset_index()
    assert table["image size"].tolist() == [128, 96, 96, 128, 160, 160]
    assert table["first at"].tolist() == ["-", "64", "64", "64, 96", "64, 96, 128", "-"]
    assert table["est. s/epoch"].tolist() == [10.0, 3.0, 3.0, 4.0, 5.5, 10.0]  # the plan's mean
    assert table["dropout"].tolist() == [0.0, 0.0, 0.2, 0.2, 0.2, 0.2]
    assert secs["recommended"] == {160: 10.0, 128: 6.0, 96: 4.0, 64: 2.0}  # the caller's timings, untouched


def test_a_shrunk_run_keeps_what_the_recipe_item_sets(tmp_path):
    from seglib.study import RECIPE_STUDIES, plan_recipe_study

    ws = workspace("recommended", tmp_path)
    study = RECIPE_STUDIES["recommended"].with_params(
        "recommended+scale_jitter=0.1,recommended+ema_decay=0", "1"
    )
    secs = {160: 10.0, 128: 6.0, 96: 4.0, 64: 2.0}
    plan = plan_recipe_study(
        ws.config,
        study,
        "unet",
        "recommended",
        epoch_seconds=dict.fromkeys(("recommended+scale_jitter=0.1", "recommended+ema_decay=0"), secs),
    )
    (_, _, zoom), (_, _, no_ema) = plan.jobs
    assert (zoom.image_size, zoom.scale_jitter, zoom.model_kwargs) == (96, 0.1, {"base_channels": 16})
    assert (no_ema.image_size, no_ema.scale_jitter, no_ema.ema_decay) == (96, 0.0, 0.0)
    # The ResNet34-UNet's addition is its zoom: a shrunk run drops it but keeps its width and the item's.
    resnet_secs = {160: 30.0, 128: 20.0, 96: 10.0, 64: 6.0}  # 1 minute buys at most 10 epochs
    resnet = plan_recipe_study(
        ws.config,
        study,
        "resnet34_unet",
        "recommended",
        epoch_seconds=dict.fromkeys(("recommended+scale_jitter=0.1", "recommended+ema_decay=0"), resnet_secs),
    )
    (_, _, r), (_, _, r_no_ema) = resnet.jobs
    assert (r.image_size, r.scale_jitter, r.model_kwargs, r.lr) == (96, 0.1, {"base_channels": 32}, 2e-3)
    assert (r_no_ema.image_size, r_no_ema.scale_jitter, r_no_ema.ema_decay) == (96, 0.0, 0.0)
    # Each model needs its epochs: at 12 minutes the ResNet34-UNet's 36 at 128 px are short of its 40.
    assert (study.epochs_needed("unet"), study.epochs_needed("resnet34_unet")) == (40, 40)
    assert study.with_params(min_epochs=7).epochs_needed("resnet34_unet") == 7  # the notebook's parameter
    long = plan_recipe_study(
        ws.config,
        study.with_params("recommended", "3,12"),
        "resnet34_unet",
        "recommended",
        epoch_seconds={"recommended": {160: 30.0, 128: 20.0, 96: 16.0, 64: 10.0}},
    )
    # 3 minutes: 18 epochs at most, so the two smallest sizes without the zoom (13 at 96 px after 64); 12
    # minutes: 45 at 96 px, so 46 at 128 px after 64 and 96 (15.3 s an epoch)
    assert [(c.image_size, c.epochs, c.scale_jitter) for _, _, c in long.jobs] == [
        (96, 13, 0.0),
        (128, 46, 0.25),
    ]
    faster = {"recommended": {160: 16.0, 128: 12.0}}
    plan = plan_recipe_study(
        ws.config,
        study.with_params("recommended", "12"),
        "resnet34_unet",
        "recommended",
        epoch_seconds=faster,
    )
    assert [(c.image_size, c.epochs) for _, _, c in plan.jobs] == [(160, 45)]


def test_the_epoch_estimate_times_the_probes_second_epoch(monkeypatch, tmp_path):
    """The first epoch carries one-off costs: the second, with the margin, is the estimate."""
    from types import SimpleNamespace

    from seglib.study import budgets

    probes = []

    def probe(cfg):
        probes.append(cfg)
        return SimpleNamespace(history=pd.DataFrame({"seconds": [9.0, 2.0]}))

    monkeypatch.setattr(budgets, "fit", probe)  # the two epochs' times, not a training
    cfg = tiny_train_config(tmp_path / "data", tmp_path / "runs", epochs=30)
    assert budgets.estimate_epoch_seconds(cfg) == pytest.approx(1.15 * 2.0)
    assert budgets.estimate_epoch_seconds(cfg, margin=1.0) == pytest.approx(2.0)
    assert (
        probes[0].epochs == 2 and probes[0].checkpoint_every == 0 and probes[0].output_dir != cfg.output_dir
    )

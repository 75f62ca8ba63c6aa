"""The recommended recipe's parts: weight EMA, recipes and profiles, per-epoch checkpoints, resume with EMA."""

import pandas as pd
import pytest
import torch
from torch import nn

import seglib.engine.train as train_mod
from seglib.engine import (
    RECIPES,
    ModelEMA,
    TrainConfig,
    config_from_profile,
    fit,
    load_checkpoint,
    load_model,
)
from seglib.engine.config import MODEL_RECIPES
from seglib.engine.train import TrainingInterrupted


def cfg_for(root, out, **kw) -> TrainConfig:
    base = dict(
        model="unet",
        model_kwargs={"base_channels": 4},
        data_root=str(root),
        dataset="oxford-pet",
        image_size=32,
        epochs=3,
        batch_size=4,
        train_limit=14,
        val_limit=6,
        output_dir=str(out),
        progress=False,
        lr=3e-3,
        scheduler="onecycle",
        run_name="r",
        ema_decay=0.9,
        scale_jitter=0.2,
        copy_paste=0.5,
        tta=True,
        loss="bce_dice",
    )
    base.update(kw)
    return TrainConfig(**base)


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


# --- recipes and profiles ---------------------------------------------------------------------------
def test_full_profile_is_the_original_recipe_and_quick_the_recommended():
    full = config_from_profile("full")
    assert (full.lr, full.scheduler, full.loss, full.ema_decay, full.scale_jitter, full.tta) == (
        1e-4,
        "none",
        "bce",
        0.0,
        0.0,
        False,
    )
    assert full == TrainConfig()  # the original's settings are the defaults
    for profile in ("quick", "recommended"):
        for model in ("unet", "resnet34_unet"):
            cfg = config_from_profile(profile, model=model)
            for key, value in {**RECIPES["recommended"], **MODEL_RECIPES.get((profile, model), {})}.items():
                if key != "model_kwargs":
                    assert getattr(cfg, key) == value, (profile, model, key)
    # The 12-minute budget the recipe study measured, per model (README, "Recipe study"); the UNet's
    # regularisation comes with the recommended recipe only, not with the original's it is compared with.
    unet = config_from_profile("recommended", model="unet")
    assert (unet.image_size, unet.epochs, unet.model_kwargs, unet.scale_jitter) == (
        160,
        70,
        {"base_channels": 16, "dropout": 0.2},
        0.25,
    )
    plain = config_from_profile("recommended", recipe="original", model="unet")
    assert (plain.image_size, plain.model_kwargs, plain.scale_jitter) == (160, {"base_channels": 16}, 0.0)
    assert config_from_profile("quick", model="unet").model_kwargs == {"base_channels": 16}
    resnet = config_from_profile("recommended", model="resnet34_unet")
    assert (resnet.image_size, resnet.epochs, resnet.model_kwargs) == (96, 60, {})
    assert RECIPES["recommended"]["ema_decay"] > 0 and RECIPES["recommended"]["scheduler"] == "onecycle"
    # A recipe on another profile's sizes: the recommended recipe at the original's 256 px, 50 epochs.
    gpu = config_from_profile("full", recipe="recommended")
    assert (gpu.image_size, gpu.epochs, gpu.lr) == (256, 50, RECIPES["recommended"]["lr"])
    # and the original recipe at the quick profile's sizes
    q = config_from_profile("quick", recipe="original")
    assert (q.image_size, q.lr, q.scheduler, q.ema_decay) == (128, 1e-4, "none", 0.0)
    assert config_from_profile("quick", recipe="original", lr=5e-4).lr == 5e-4  # overrides come last
    with pytest.raises(
        ValueError, match=r"unknown recipe 'best'; choose one of \['original', 'recommended'\]"
    ):
        config_from_profile("quick", recipe="best")


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


def test_validation_scores_the_ema_model_with_tta(synthetic_root, tmp_path):
    kw = dict(epochs=1, train_limit=8, run_name=None)
    plain = fit(cfg_for(synthetic_root, tmp_path / "a", ema_decay=0.0, tta=False, **kw)).history
    ema = fit(cfg_for(synthetic_root, tmp_path / "b", tta=False, **kw)).history
    ema_tta = fit(cfg_for(synthetic_root, tmp_path / "c", **kw)).history
    # Same training (the EMA does not touch it), different validated models.
    assert plain.train_loss.tolist() == ema.train_loss.tolist() == ema_tta.train_loss.tolist()
    assert plain.val_loss[0] != ema.val_loss[0] != ema_tta.val_loss[0]


def test_copy_paste_changes_the_training_batches_only_when_augmenting(synthetic_root, tmp_path):
    kw = dict(epochs=1, train_limit=8, ema_decay=0.0, scale_jitter=0.0, tta=False, run_name=None)
    off = fit(cfg_for(synthetic_root, tmp_path / "a", copy_paste=0.0, **kw)).history
    on = fit(cfg_for(synthetic_root, tmp_path / "b", **kw)).history
    plain = fit(cfg_for(synthetic_root, tmp_path / "c", copy_paste=0.0, augment=False, **kw)).history
    plain_cp = fit(cfg_for(synthetic_root, tmp_path / "d", augment=False, **kw)).history
    assert on.train_loss[0] != off.train_loss[0]
    assert plain.train_loss[0] == plain_cp.train_loss[0]  # augment=False turns every augmentation off


def test_resumed_recipe_run_equals_uninterrupted_run(synthetic_root, tmp_path, monkeypatch):
    """EMA, zoom and copy-paste augmentation, BCE + Dice and TTA validation survive a Ctrl-C mid-epoch bit for bit."""
    whole = fit(cfg_for(synthetic_root, tmp_path / "a"))
    real_loss, count = train_mod.bce_loss, {"n": 0}

    def loss(logits, target):
        if torch.is_grad_enabled():
            count["n"] += 1
            if count["n"] == 6:
                import os
                import signal

                os.kill(os.getpid(), signal.SIGINT)
        return real_loss(logits, target)

    monkeypatch.setattr(train_mod, "bce_loss", loss)
    with pytest.raises(TrainingInterrupted):
        fit(cfg_for(synthetic_root, tmp_path / "b"))
    monkeypatch.setattr(train_mod, "bce_loss", real_loss)
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


def test_epochs_for_budget(synthetic_root, tmp_path):
    from seglib.study import epochs_for_budget, estimate_epoch_seconds

    cfg = cfg_for(synthetic_root, tmp_path / "runs", checkpoint_every=1)
    secs = estimate_epoch_seconds(cfg)  # two real epochs, in a folder of their own
    assert secs > 0 and not (tmp_path / "runs").exists()
    assert epochs_for_budget(cfg, 10 * secs / 60, epoch_seconds=secs) == 10
    assert epochs_for_budget(cfg, 0.001, epoch_seconds=secs) == 1  # at least one epoch
    with pytest.raises(ValueError, match="budget minutes must be positive"):
        epochs_for_budget(cfg, 0.0, epoch_seconds=secs)


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
    plain = {"scale_jitter": 0.0, "copy_paste": 0.0}  # a smaller size takes these, the profile's does not
    fitted = fit_to_budget(cfg, 1.0, min_epochs=12, sizes=[48], epoch_seconds=secs, shrunk=plain)
    assert (fitted.image_size, fitted.scale_jitter, fitted.copy_paste) == (48, 0.0, 0.0)
    fitted = fit_to_budget(cfg, 12.0, min_epochs=12, sizes=[48], epoch_seconds=secs, shrunk=plain)
    assert (fitted.image_size, fitted.scale_jitter) == (64, cfg.scale_jitter) and cfg.scale_jitter > 0
    probed: dict[int, float] = {}
    fitted = fit_to_budget(cfg, 0.5, min_epochs=1, sizes=[32], epoch_seconds=probed)
    assert list(probed) == [64] and probed[64] > 0  # a missing size is timed (two real epochs), once

"""The studies of notebooks 05 and 06 as named plans, and the recipe study's measures.

`SCHEDULER_STUDIES[profile]` and `RECIPE_STUDIES[profile]` say what each notebook trains for a profile;
`plan_scheduler_study` and `plan_recipe_study` turn one into the runs' configs (training nothing).

The recipe study: Dice versus minutes of training, per recipe, at a budget set in minutes.

A run keeps its model every epoch (`checkpoint_every`); each of those models is then scored on a split
at original resolution. Its x coordinate is the training time the run had spent when it was saved
(training and per-epoch validation, as history.csv counts it; not the scoring afterwards). A budget's
Dice is that of the last model saved within the budget: what a user who stops there has.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from .data import OxfordPetDataset
from .engine import (
    RECIPES,
    SCHEDULERS,
    TrainConfig,
    evaluate,
    fit,
    load_checkpoint,
    load_model,
    make_datasets,
    summarize,
    with_recipe,
)
from .engine.loaders import train_steps_per_epoch
from .engine.presets import RECIPE_KEYS
from .engine.progress import progress_bar

__all__ = [
    "json_or_text",
    "parse_recipes",
    "estimate_epoch_seconds",
    "epochs_for_budget",
    "fit_to_budget",
    "ladder",
    "dice_versus_minutes",
    "dice_at_budgets",
    "budget_reading",
    "SchedulerStudy",
    "SchedulerPlan",
    "SCHEDULER_STUDIES",
    "plan_scheduler_study",
    "RecipeStudy",
    "RecipePlan",
    "RECIPE_STUDIES",
    "plan_recipe_study",
    "model_at_budget",
    "recipe_run_prefix",
]

# A config for (model, recipe, **overrides) on the notebook's data and profile: `Workspace.config`.
ConfigFn = Callable[..., TrainConfig]


def json_or_text(text: str) -> Any:
    """A command-line value: JSON where it parses (7, 0.99, true, "x"), else the text itself (unet, 3,6,12)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_recipes(spec: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """ "original,recommended+ema_decay=0+image_size=128" -> {label: (recipe, overrides)}.

    Each comma-separated item is a recipe of `RECIPES`, optionally with `+key=value` changes (values are
    read as JSON where they parse: 0.99, true, "x"; else as text): an ablation is one item per lever.
    """
    known = {f.name for f in fields(TrainConfig)}
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        name, *changes = item.split("+")
        if name not in RECIPES:
            raise ValueError(f"recipes: unknown recipe {name!r} in {item!r}; choose one of {list(RECIPES)}")
        over: dict[str, Any] = {}
        for change in changes:
            key, sep, value = change.partition("=")
            if not sep or key not in known:
                raise ValueError(f"recipes: {change!r} in {item!r} is not key=value with a TrainConfig key")
            over[key] = json_or_text(value)
        out[item] = (name, over)
    if not out:
        raise ValueError(f"recipes: no recipe in {spec!r}; e.g. 'original,recommended'")
    return out


def _settings_for(settings: dict[str, Any], owner: str, model: str) -> dict[str, Any]:
    """A study's `settings` for `model`: its `model_kwargs` are `owner`'s (a width chosen for one model),
    so another model trains with its preset's own."""
    return settings if model == owner else {k: v for k, v in settings.items() if k != "model_kwargs"}


def estimate_epoch_seconds(cfg: TrainConfig, margin: float = 1.15) -> float:
    """Seconds one epoch of `cfg` takes on this machine, with a `margin`: two real epochs are run and
    thrown away, and the second one, timed, counts.

    Everything an epoch of the run does counts: data, augmentation, EMA, validation. The first epoch
    carries one-off costs (allocations, kernel selection) and is left out. A run's epochs come out
    slower than the probe's (it also writes a checkpoint every epoch, whose write-back competes for
    the cores) and vary from epoch to epoch: the margin covers that, so that a planned run ends within
    its budget (the measurements behind the default: docs/experiments/recipe_study_resnet34_unet.md).
    Steps on random tensors, or a single real epoch, underestimated.
    """
    cache_dir = cfg.cache_dir or str(Path(cfg.output_dir).parent / "cache")  # the run's own cache
    with tempfile.TemporaryDirectory(prefix="seglib-probe-") as tmp:
        probe = replace(
            cfg,
            epochs=2,
            checkpoint_every=0,
            output_dir=tmp,
            run_name="probe",
            overwrite=True,
            progress=False,
            use_wandb=False,
            cache_dir=cache_dir,
        )
        return margin * float(fit(probe).history.seconds.iloc[-1])


def epochs_for_budget(cfg: TrainConfig, minutes: float, epoch_seconds: float | None = None) -> int:
    """How many whole epochs of `cfg` fit in `minutes` of training here (at least 1)."""
    if not minutes > 0:
        raise ValueError(f"budget minutes must be positive, got {minutes!r}")
    epoch_seconds = epoch_seconds or estimate_epoch_seconds(cfg)
    # the epsilon: a budget of exactly N epochs (minutes = N * seconds / 60) can divide to N - 1e-15
    return max(1, math.floor(minutes * 60 / epoch_seconds + 1e-9))


def fit_to_budget(
    cfg: TrainConfig,
    minutes: float,
    min_epochs: int = 0,
    sizes: Sequence[int] = (),
    epoch_seconds: dict[int, float] | None = None,
    shrunk: dict[str, Any] | None = None,
    replan: bool = True,
    progressive: bool = False,
) -> TrainConfig:
    """`cfg` with the epochs that fit `minutes` here, at the largest image size where they reach `min_epochs`.

    `min_epochs` is what the schedule needs: with fewer, its warm-up and decay are too short to train the
    model, and smaller images buy more epochs. How many a budget buys depends on the machine (a CPU without
    native bf16 buys a third of the epochs at 160 px), so the size follows from the epochs, not from the
    profile alone. Sizes tried: `cfg.image_size`, then those of `sizes` below it, largest first. With
    `progressive`, the size that gets its epochs gives way to the one above it trained with progressive
    resizing (`ladder`: the smaller `sizes` first, each an equal share of the epochs with the size itself),
    even where that gets a few epochs fewer than `min_epochs`: with few epochs, a larger final size served
    better than more epochs at a smaller one (docs/experiments/recipe_study.md), but not two sizes up. Where
    none reaches `min_epochs`, the smallest trains, with the settings in `shrunk` (e.g. no regularisation: so
    few steps underfit); with `progressive`, as the first step of the ladder to the size above it (half the
    epochs each), which served better there too. `epoch_seconds` maps a size to its timed epoch: given ones
    are used, missing ones timed (`estimate_epoch_seconds`) and added. `replan`: the run also re-plans its epochs from its own
    epochs' times as it trains (`budget_minutes`, seglib/engine/budget.py); False: it trains the epochs planned.
    """
    seconds = {} if epoch_seconds is None else epoch_seconds
    candidates = sorted({cfg.image_size, *(s for s in sizes if s < cfg.image_size)}, reverse=True)
    budget = minutes if replan else cfg.budget_minutes
    larger = None  # the size tried before this one, short of min_epochs
    for size in candidates:
        own = [s for s in cfg.progressive_sizes or () if s < size] or None  # an item's own, where they fit
        fitted = _fitted(replace(cfg, image_size=size, progressive_sizes=own), minutes, seconds, budget)
        if fitted.epochs >= min_epochs:
            if progressive and larger is not None:  # even short of min_epochs: it served better
                return _fitted(ladder(cfg, larger, sizes), minutes, seconds, budget)
            return fitted
        larger = size
    if progressive and len(candidates) > 1:
        fitted = _fitted(ladder(cfg, candidates[-2], candidates[-1:]), minutes, seconds, budget)
    return replace(fitted, **(shrunk or {}))  # the smallest size (or its ladder), short of min_epochs


def _fitted(cfg: TrainConfig, minutes: float, seconds: dict[int, float], budget: float | None) -> TrainConfig:
    epochs = epochs_for_budget(cfg, minutes, _plan_seconds(cfg, seconds))
    return replace(cfg, epochs=epochs, budget_minutes=budget)


def ladder(cfg: TrainConfig, size: int, sizes: Sequence[int]) -> TrainConfig:
    """`cfg` at `size`, trained first at the `sizes` below it: each size an equal share of the epochs."""
    steps = sorted(s for s in set(sizes) if s < size)
    return replace(
        cfg, image_size=size, progressive_sizes=steps, progressive_share=len(steps) / (len(steps) + 1)
    )


def _plan_seconds(cfg: TrainConfig, seconds: dict[int, float]) -> float:
    """The mean seconds of an epoch of `cfg`, each of its sizes at its timed epoch (`seconds`; missing ones
    timed and added)."""
    for size in {cfg.image_size, *(cfg.progressive_sizes or ())} - set(seconds):
        seconds[size] = estimate_epoch_seconds(replace(cfg, image_size=size, progressive_sizes=None))
    full = seconds[cfg.image_size]
    if not cfg.progressive_sizes:
        return full
    small = sum(seconds[s] for s in cfg.progressive_sizes) / len(cfg.progressive_sizes)
    return cfg.progressive_share * small + (1 - cfg.progressive_share) * full


def dice_versus_minutes(
    run_dir: str | Path,
    dataset: OxfordPetDataset,
    device: str = "auto",
    tta: bool | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per model in `<run_dir>/epochs/`: epoch, train_minutes, val_dice (of the run) and the Dice of
    `dataset` at original resolution (mean, median, min, dataset-level). `tta`: None takes the run's own.
    `progress`: a bar over the models scored.
    """
    paths = sorted(Path(run_dir, "epochs").glob("epoch_*.pt"))
    if not paths:
        raise FileNotFoundError(
            f"{Path(run_dir) / 'epochs'} holds no epoch models; train with checkpoint_every=1"
        )
    rows = []
    for path in progress_bar(paths, desc=f"scoring {Path(run_dir).name}", disable=not progress):
        ckpt = load_checkpoint(path)
        use_tta = bool(ckpt["config"].get("tta", False)) if tta is None else tta
        s = summarize(evaluate(load_model(path), dataset, device=device, progress=False, tta=use_tta)).loc[
            "original"
        ]
        rows.append(
            {
                "epoch": ckpt["epoch"],
                "train_minutes": ckpt["train_seconds"] / 60,
                "val_dice": ckpt["val_dice"],
                "dice": s.dice_mean,
                "dice_median": s.dice_median,
                "dice_min": s.dice_min,
                "dice_dataset": s.dice_dataset,
                "tta": use_tta,
            }
        )
    return pd.DataFrame(rows)


def dice_at_budgets(
    curves: dict[str, pd.DataFrame], budgets: list[float], column: str = "dice"
) -> pd.DataFrame:
    """Rows: budgets in minutes; columns: recipes; cells: `column` of the model a user with that budget has.

    A curve with a `budget` column holds one run per budget (a schedule fitted to it): the run's reading
    for its budget (`budget_reading`), if it lies within it. Otherwise (one run, models along it): the last model
    saved within the budget. NaN where there is none: a budget is a budget.
    """
    table = {}
    for name, curve in curves.items():
        rows = [model_at_budget(curve, b) for b in budgets]
        table[name] = [math.nan if row is None else row[column] for row in rows]
    return pd.DataFrame(table, index=pd.Index(budgets, name="budget (min)"))


def model_at_budget(curve: pd.DataFrame, budget: float) -> pd.Series | None:
    """The row of `curve` a user with `budget` minutes has (`dice_at_budgets`' rule): the budget's own run
    where the curve has a run per budget (a `budget` column), else the last model along the one run;
    in either, the last saved within the budget. None where there is none."""
    if "budget" in curve and curve.budget.notna().any():
        curve = curve[curve.budget == budget]
    within = curve[curve.train_minutes <= budget]
    return within.iloc[-1] if len(within) else None


def budget_reading(curve: pd.DataFrame, budget: float) -> pd.DataFrame:
    """The row of `curve` (one run planned for `budget` minutes, a row per kept model) that a user with the
    budget has: its last model saved within the budget. A run can come out slower than its probe and end
    past its budget; a model it kept before then still counts. With none kept in time, its last model
    (which `dice_at_budgets` then leaves out). One row, with a `budget` column."""
    within = curve[curve.train_minutes <= budget]
    return (within if len(within) else curve).iloc[[-1]].assign(budget=budget)


# --- notebook 05: one training per scheduler ------------------------------------------------------------
@dataclass(frozen=True)
class SchedulerStudy:
    """Notebook 05 for a profile: one run per scheduler, with the same model, data, seed and peak lr."""

    changes: dict[str, Any] = field(default_factory=dict)  # over the preset; `model_kwargs`: the UNet's only


SCHEDULER_STUDIES: dict[str, SchedulerStudy] = {
    "full": SchedulerStudy(),
    "recommended": SchedulerStudy(),
    # five trainings instead of one: the quick profile shrunk further (a narrower UNet, fewer, smaller images)
    "quick": SchedulerStudy(
        {"image_size": 96, "train_limit": 120, "epochs": 6, "model_kwargs": {"base_channels": 8}}
    ),
    "tiny": SchedulerStudy(),
    # five UNet trainings of 8 epochs on all the images at 256 px: about 4-5 minutes on an H100 (an
    # estimate from its measured throughput, to be measured; docs/gpu.md)
    "gpu": SchedulerStudy({"epochs": 8}),
}


@dataclass(frozen=True)
class SchedulerPlan:
    """The runs of notebook 05: one config per scheduler."""

    configs: dict[str, TrainConfig]  # scheduler -> its run
    epochs: int
    steps_per_epoch: int  # optimizer steps of one training epoch (the loader's, its drop_last rule included)


def plan_scheduler_study(
    config: ConfigFn,
    profile: str,
    model: str,
    schedulers: str = ",".join(SCHEDULERS),
    epochs: int = 0,
    lr: float = 1e-3,
    seed: int = 42,
    n_train: int | None = None,
) -> SchedulerPlan:
    """The profile's `SCHEDULER_STUDIES` entry as one config per scheduler of `schedulers` (comma-separated).

    `epochs` (0: the study's, else the preset's); `lr` is every schedule's peak. "step" decays every third
    of the epochs. `n_train`: the number of training images (None: counted from the first run's dataset).
    """
    names = [s.strip() for s in schedulers.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SCHEDULERS))
    if unknown or not names:
        raise ValueError(f"unknown schedulers {unknown or names}; choose from {list(SCHEDULERS)}")
    if profile not in SCHEDULER_STUDIES:
        raise ValueError(
            f"no scheduler study for profile {profile!r}; choose one of {list(SCHEDULER_STUDIES)}"
        )
    changes = dict(_settings_for(SCHEDULER_STUDIES[profile].changes, "unet", model))
    if epochs:
        changes["epochs"] = epochs
    n_epochs = config(model, **changes).epochs
    configs = {
        s: config(
            model,
            **changes,
            lr=lr,
            seed=seed,
            scheduler=s,
            step_size=max(1, n_epochs // 3),
            run_name=f"schedulers-{s}-{profile}",
        )
        for s in names
    }
    first = configs[names[0]]
    n = len(make_datasets(first)[0]) if n_train is None else n_train
    return SchedulerPlan(configs, n_epochs, train_steps_per_epoch(n, first.batch_size))


# --- notebook 06: Dice per minute of training, per recipe ---------------------------------------------
@dataclass(frozen=True)
class RecipeStudy:
    """Notebook 06 for a profile: the recipe items, the budgets, and what the runs share."""

    recipes: str  # `parse_recipes` items, e.g. "original,recommended+tta=true"
    budgets: tuple[float, ...]  # training minutes (empty: no budget, the runs' epochs are fixed in `common`)
    every: int  # along each recipe's longest run, keep every N-th epoch's model for scoring
    # settings of every run, over the preset; its `model_kwargs` are `model`'s only (another model keeps its own)
    common: dict[str, Any] = field(default_factory=dict)
    model: str = "resnet34_unet"  # the model studied when the notebook names none
    # the epochs a schedule needs (fewer at the preset's size: smaller images), one for every model or per model
    min_epochs: int | dict[str, int] = 0
    sizes: tuple[int, ...] = ()  # the image sizes it may take instead
    progressive: bool = False  # the size that gets min_epochs gives way to the `ladder` one size up
    test_limit: int | None = None  # score on the first N test images (None: all)

    def with_params(
        self, recipes: str = "", budgets: str = "", min_epochs: int = -1, every: int = 0, test_limit: int = 0
    ) -> RecipeStudy:
        """The study with the notebook's parameters where they are set ("", 0, -1: the study's own)."""
        return replace(
            self,
            recipes=recipes or self.recipes,
            budgets=tuple(float(b) for b in budgets.split(",") if b.strip()) if budgets else self.budgets,
            min_epochs=self.min_epochs if min_epochs < 0 else min_epochs,
            every=every or self.every,
            test_limit=test_limit or self.test_limit,
        )

    def epochs_needed(self, model: str) -> int:
        """`min_epochs` for `model` (0 where the study gives it none)."""
        return self.min_epochs if isinstance(self.min_epochs, int) else self.min_epochs.get(model, 0)


RECIPE_STUDIES: dict[str, RecipeStudy] = {
    # the study the recommended presets come from; the original at 128 px, as the issue measured it. The
    # epochs each model needs, whichever CPU buys them (docs/experiments/recipe_study.md, issue 22): the
    # UNet about 40; the ResNet34-UNet of width 32 scored alike at 160 px for 45 epochs and 128 px for 65.
    "recommended": RecipeStudy(
        "original+image_size=128,recommended",
        (1, 2, 3, 6, 12),
        every=2,
        min_epochs={"unet": 40, "resnet34_unet": 40},
        sizes=(64, 96, 128),
        progressive=True,
    ),
    # a demonstration in 1.25 minutes of training on any machine: 05's narrow UNet, whose epochs are cheap
    # enough for a curve even on a CPU without native bf16 (a few epochs at 0.25 minutes there)
    "quick": RecipeStudy(
        "original,recommended",
        (0.25, 0.5),
        every=2,
        common={"image_size": 96, "train_limit": 160, "model_kwargs": {"base_channels": 8}},
        model="unet",
    ),
    "tiny": RecipeStudy("original,recommended+tta=true", (), every=1, common={"epochs": 2}, test_limit=10),
    "full": RecipeStudy("original,recommended", (60, 120, 240), every=5),
    # minutes of an H100 at the original's size: about 14 minutes of training and scoring in all (an
    # estimate, to be measured; docs/gpu.md). The original's recipe keeps its batch of 8.
    "gpu": RecipeStudy("original,recommended", (1, 2, 4), every=8),
}


@dataclass(frozen=True)
class RecipePlan:
    """The runs of notebook 06 and the table that shows them."""

    jobs: list[tuple[str, float | None, TrainConfig]]  # (recipe label, budget or None: read along, config)
    table: pd.DataFrame  # one row per run, indexed by recipe and budget: its epochs, size and settings
    marks: list[float]  # the budgets, ascending (empty: fixed epochs)
    budget: float | None  # the longest budget (None: fixed epochs, the runs set the time)


def _plain_recipe(cfg: TrainConfig, recipe: str, keep: dict[str, Any]) -> dict[str, Any]:
    """The settings that take `cfg` to `recipe`'s own (dropping a model's additions to it), but `keep`'s."""
    plain = with_recipe(cfg.to_dict(), recipe)
    owned = (*RECIPE_KEYS, "model_kwargs")
    return {k: plain[k] for k in owned if plain[k] != getattr(cfg, k) and k not in keep}


def _plan_row(
    label: str, budget: float | None, run: TrainConfig, epoch_seconds: float | None
) -> dict[str, Any]:
    """A run's row in notebook 06's plan table: its epochs, sizes and the recipe's settings."""
    return {
        "recipe": label,
        "budget (min)": budget,
        "epochs": run.epochs,
        "est. s/epoch": epoch_seconds,
        "image size": run.image_size,
        "first at": ", ".join(map(str, run.progressive_sizes or ())) or "-",
        "lr": run.lr,
        "scheduler": run.scheduler,
        "loss": run.loss,
        "EMA": run.ema_decay,
        "zoom": run.scale_jitter,
        "dropout": run.model_kwargs.get("dropout", 0.0),
        "TTA": run.tta,
        "border": run.border,
    }


def recipe_run_prefix(label: str) -> str:
    """The start of the run folders' names of a recipe item, e.g. "recipe-original_image_size-128" (its runs
    are <prefix>-<budget>min-<profile>, or -fixed-)."""
    return "recipe-" + label.replace("+", "_").replace("=", "-")


def _budget_fitter(
    study: RecipeStudy,
    model: str,
    cfg: TrainConfig,
    recipe: str,
    changes: dict[str, Any],
    explicit: dict[str, Any],
    secs: dict[int, float],
) -> Callable[..., TrainConfig]:
    """`fit_to_budget(minutes=...)` for one recipe item (`changes`: what the item sets; `explicit`: that
    and what `common` sets).

    A schedule is fitted to each budget (one run each); without one, a run stopped early is the shorter
    run. A schedule on a short budget: the largest size that still gives it min_epochs epochs (with the
    study's `progressive`, the ladder one size up), and where none does, the two smallest (a ladder)
    without the model's additions (so few steps underfit). An item that sets its size keeps it.
    """
    scheduled = cfg.scheduler != "none"
    return partial(
        fit_to_budget,
        cfg,
        min_epochs=study.epochs_needed(model) if scheduled and "image_size" not in changes else 0,
        sizes=study.sizes,
        epoch_seconds=secs,
        shrunk=_plain_recipe(cfg, recipe, keep=explicit),
        # an item that sets budget_minutes keeps it (null: trains the epochs planned, no re-plans)
        replan="budget_minutes" not in explicit,
        progressive=study.progressive,
    )


def plan_recipe_study(
    config: ConfigFn,
    study: RecipeStudy,
    model: str,
    profile: str,
    epochs: int = 0,
    seed: int = 42,
    epoch_seconds: dict[str, dict[int, float]] | None = None,
) -> RecipePlan:
    """The runs of `study` for `model` (`profile` names them).

    A scheduled recipe gets one run per budget, its schedule fitted to it (`fit_to_budget`); a recipe
    without a schedule one run of the longest budget, read along its kept models. `epochs` > 0 (or an
    `epochs` setting) fixes the epochs instead: one run per recipe. A run whose budget buys fewer than
    `min_epochs` at every size is the recipe's plain settings: without the model's own additions to its
    profile's recipe (the recommended models' zoom, the UNet's dropout), but with what the item or `common` sets.
    `epoch_seconds` maps a recipe label to its timed epoch per image size; missing ones are timed here
    (two real epochs).
    """
    marks = sorted(float(b) for b in study.budgets)
    budget = marks[-1] if marks else None
    common = _settings_for(study.common, study.model, model)
    jobs: list[tuple[str, float | None, TrainConfig]] = []
    rows = []
    for label, (recipe, changes) in parse_recipes(study.recipes).items():
        name = recipe_run_prefix(label)
        explicit = {**common, **changes}
        cfg = config(model, recipe, **{**common, "seed": seed, "overwrite": True, **changes})
        fixed = bool(epochs) or "epochs" in explicit
        if not fixed and not marks:
            raise ValueError("budgets: give training minutes (e.g. 3,6,12) or a fixed number of epochs")
        secs = {} if fixed else dict((epoch_seconds or {}).get(label, {}))  # timed epoch per image size
        if not fixed and cfg.image_size not in secs:
            secs[cfg.image_size] = estimate_epoch_seconds(cfg)
        scheduled = cfg.scheduler != "none"
        fitted = _budget_fitter(study, model, cfg, recipe, changes, explicit, secs)
        for b in marks if scheduled and not fixed else [budget]:
            run = replace(cfg, epochs=epochs or cfg.epochs) if fixed else fitted(minutes=b)
            every = study.every if b == budget else run.epochs  # shorter runs: their last model only
            tag = "fixed" if fixed else f"{b:g}min"
            read_along = fixed or not scheduled
            run = replace(run, checkpoint_every=every, run_name=f"{name}-{tag}-{profile}")
            jobs.append((label, None if read_along else b, run))
            rows.append(_plan_row(label, b, run, None if fixed else _plan_seconds(run, secs)))
    return RecipePlan(jobs, pd.DataFrame(rows).set_index(["recipe", "budget (min)"]), marks, budget)

"""Notebook 06: Dice per minute of training, per recipe. A profile's study (`RECIPE_STUDIES`) becomes the
runs' configs (`plan_recipe_study`): one run per budget for a scheduled recipe, its schedule and image size
fitted to it (`budgets.fit_to_budget`)."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import pandas as pd

from ..engine import TrainConfig, number_list, with_recipe
from ..engine.config import MAX_RUN_NAME, one_folder
from ..engine.presets import RECIPE_KEYS
from ..params import name_list
from .budgets import estimate_epoch_seconds, fit_to_budget, plan_seconds
from .settings import ConfigFn, parse_recipes, settings_for

__all__ = [
    "RecipeStudy",
    "RECIPE_STUDIES",
    "RecipePlan",
    "plan_recipe_study",
    "check_budgets",
    "recipe_run_prefix",
    "recipe_run_name",
]


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
        """The study with the notebook's parameters where they are set ("", 0, -1: the study's own).

        Checked before anything is timed or trained: budgets positive and finite minutes, none given
        twice (as the run names print them); `every` and `test_limit` counts (0: the study's own)."""
        for name, value in (("checkpoint_every", every), ("test_limit", test_limit)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"{name}: give a whole number >= 1 (0: the profile's study's own), got {value!r}"
                )
        if isinstance(min_epochs, bool) or not isinstance(min_epochs, int) or min_epochs < -1:
            raise ValueError(
                f"min_epochs: give a whole number >= 0 (-1: the profile's study's own), got {min_epochs!r}"
            )
        study = replace(
            self,
            recipes=name_list("recipes", recipes) or self.recipes,
            budgets=number_list(budgets, "budgets") if budgets not in ("", None) else self.budgets,
            min_epochs=self.min_epochs if min_epochs < 0 else min_epochs,
            every=every or self.every,
            test_limit=test_limit or self.test_limit,
        )
        check_budgets(study.budgets)
        return study

    def epochs_needed(self, model: str) -> int:
        """`min_epochs` for `model` (0 where the study gives it none)."""
        return self.min_epochs if isinstance(self.min_epochs, int) else self.min_epochs.get(model, 0)


def check_budgets(budgets: tuple[float, ...]) -> None:
    """A ValueError naming `budgets` unless each is a positive, finite number of minutes, and no two name
    the same run (as its folder prints it, e.g. 0.3 and 0.30)."""
    for b in budgets:
        number = isinstance(b, int | float) and not isinstance(b, bool)
        if not (number and b > 0 and math.isfinite(b)):
            shown = f"{b:g}" if number else repr(b)
            raise ValueError(f"budgets: give positive minutes of training, e.g. 1,2,3; got {shown}")
    seen: set[str] = set()
    for b in budgets:
        if f"{b:g}" in seen:
            raise ValueError(f"budgets: {b:g} given twice; give each budget once, e.g. 1,2,3")
        seen.add(f"{b:g}")


RECIPE_STUDIES: dict[str, RecipeStudy] = {
    # the study the recommended presets come from; the original at 128 px, as the issue measured it. The
    # epochs each model needs, whichever CPU buys them: docs/experiments/recipe_study.md, issue 22.
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
    # minutes of an H100 at the original's size (their total is an estimate, to be measured; docs/gpu.md). The original's recipe keeps its batch of 8.
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


# The bytes a recipe run's name keeps beside its prefix: "-12.5min-resnet34_unet-s42-recommended", and a
# folder's "-2", which `run_recipe_job` gives back as a run_name to train an unfinished run again
RECIPE_NAME_TAIL = 72


def recipe_run_prefix(label: str) -> str:
    """The start of the run folders' names of a recipe item, e.g. "recipe-original_image_size-128" (its runs
    are <prefix>-<budget>min-<model>-s<seed>-<profile>, or -fixed-: `recipe_run_name`). One plain folder
    name whatever the item sets: a path's separators as "-", a long item cut and told apart by a hash."""
    # one_folder: "+cache_dir=/tmp/c" named a folder in a folder
    prefix = one_folder("recipe-" + label.replace("+", "_").replace("=", "-"))
    room = MAX_RUN_NAME - RECIPE_NAME_TAIL
    if len(os.fsencode(prefix)) > room:  # the hash of the whole item keeps two that start alike apart
        digest = hashlib.sha1(label.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        prefix = os.fsencode(prefix)[: room - 9].decode(errors="ignore") + "-" + digest
    return prefix


def recipe_run_name(label: str, budget: float | None, model: str, seed: int, profile: str) -> str:
    """A recipe item's run folder, e.g. "recipe-recommended-12min-unet-s7-recommended" (`budget` None: fixed
    epochs, "-fixed-"): the model and seed in it, so that a study of another model or seed keeps its own."""
    tag = "fixed" if budget is None else f"{budget:g}min"
    return f"{recipe_run_prefix(label)}-{tag}-{model}-s{seed}-{profile}"


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
    check_budgets(tuple(study.budgets))  # before any timing
    marks = sorted(float(b) for b in study.budgets)
    budget = marks[-1] if marks else None
    common = settings_for(study.common, study.model, model)
    jobs: list[tuple[str, float | None, TrainConfig]] = []
    rows = []
    for label, (recipe, changes) in parse_recipes(study.recipes).items():
        explicit = {**common, **changes}
        # never over an earlier run: `run_recipe_job` trains into an existing folder only for the same config
        cfg = config(model, recipe, **{**common, "seed": seed, "overwrite": False, **changes})
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
            read_along = fixed or not scheduled
            name = recipe_run_name(label, None if fixed else b, model, run.seed, profile)
            run = replace(run, checkpoint_every=every, run_name=name)
            jobs.append((label, None if read_along else b, run))
            rows.append(_plan_row(label, b, run, None if fixed else plan_seconds(run, secs)))
    return RecipePlan(jobs, pd.DataFrame(rows).set_index(["recipe", "budget (min)"]), marks, budget)

"""Budgets in minutes: how many epochs a budget buys on this machine, and at which image size (or ladder
of sizes) a run spends them."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..engine import TrainConfig, fit

__all__ = ["estimate_epoch_seconds", "epochs_for_budget", "fit_to_budget", "ladder", "plan_seconds"]


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
    if not (minutes > 0 and math.isfinite(minutes)):
        raise ValueError(f"budget minutes must be positive and finite, got {minutes!r}")
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
    epochs = epochs_for_budget(cfg, minutes, plan_seconds(cfg, seconds))
    return replace(cfg, epochs=epochs, budget_minutes=budget)


def ladder(cfg: TrainConfig, size: int, sizes: Sequence[int]) -> TrainConfig:
    """`cfg` at `size`, trained first at the `sizes` below it: each size an equal share of the epochs."""
    steps = sorted(s for s in set(sizes) if s < size)
    return replace(
        cfg, image_size=size, progressive_sizes=steps, progressive_share=len(steps) / (len(steps) + 1)
    )


def plan_seconds(cfg: TrainConfig, seconds: dict[int, float]) -> float:
    """The mean seconds of an epoch of `cfg`, each of its sizes at its timed epoch (`seconds`; missing ones
    timed and added)."""
    for size in {cfg.image_size, *(cfg.progressive_sizes or ())} - set(seconds):
        seconds[size] = estimate_epoch_seconds(replace(cfg, image_size=size, progressive_sizes=None))
    full = seconds[cfg.image_size]
    if not cfg.progressive_sizes:
        return full
    small = sum(seconds[s] for s in cfg.progressive_sizes) / len(cfg.progressive_sizes)
    return cfg.progressive_share * small + (1 - cfg.progressive_share) * full

"""Notebook 05: one training per scheduler, with the same model, data, seed and peak lr."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..engine import SCHEDULERS, TrainConfig, make_datasets
from ..engine.loaders import train_steps_per_epoch
from .settings import ConfigFn, settings_for

__all__ = ["SchedulerStudy", "SCHEDULER_STUDIES", "SchedulerPlan", "plan_scheduler_study"]


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
    changes = dict(settings_for(SCHEDULER_STUDIES[profile].changes, "unet", model))
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

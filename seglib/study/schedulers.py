"""Notebook 05: one training per scheduler, with the same model, data, seed and peak lr."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..engine import CHOICES, SCHEDULERS, TrainConfig, fit, load_history, make_datasets
from ..engine.loaders import train_steps_per_epoch
from ..params import name_list
from .report import DECIMALS, leaders, names
from .runs import is_finished, matching_runs
from .settings import ConfigFn, settings_for

__all__ = [
    "SchedulerStudy",
    "SCHEDULER_STUDIES",
    "SchedulerPlan",
    "plan_scheduler_study",
    "scheduler_table",
    "scheduler_summary",
    "train_once",
]


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
    # five UNet trainings of 8 epochs on all the images at 256 px (their time on an H100 is an estimate
    # from its measured throughput, to be measured; docs/gpu.md)
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
    schedulers: str = "all",
    epochs: int = 0,
    lr: float = 1e-3,
    seed: int = 42,
    n_train: int | None = None,
) -> SchedulerPlan:
    """The profile's `SCHEDULER_STUDIES` entry as one config per scheduler of `schedulers` (comma-separated;
    "all": seglib's own, `SCHEDULERS`, so that one added there joins notebook 05's comparison).

    `epochs` (0: the study's, else the preset's); `lr` is every schedule's peak. "step" decays every third
    of the epochs. `n_train`: the number of training images (None: counted from the first run's dataset).
    """
    given = name_list("schedulers", schedulers)
    names = list(SCHEDULERS) if given.strip() == "all" else [s.strip() for s in given.split(",") if s.strip()]
    unknown = sorted(set(names) - set(CHOICES["scheduler"]))  # seglib's and those registered
    if unknown or not names:
        raise ValueError(f"unknown schedulers {unknown or names}; choose from {list(CHOICES['scheduler'])}")
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


def scheduler_table(histories: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Notebook 05's table: one row per scheduler (its run's history.csv, in run order): the best validation
    Dice and its epoch, the last epoch's, the seconds of training and validation, and the mean seconds of an
    epoch after the first.

    The first epoch carries one-off costs (allocations, kernel selection), the first run's most of all: its
    seconds are in `seconds` but not in `s/epoch after the first`, which compares the schedulers' cost
    (NaN with a single epoch). Wall time around `fit` would add the data's and model's set-up as well.
    """
    rows = {}
    for name, h in histories.items():
        h = h.reset_index(drop=True)
        best = int(h.val_dice.idxmax())  # the first of equal bests, as fit's best.pt
        rows[name] = {
            "best val Dice": float(h.val_dice.iloc[best]),
            "best epoch": int(h.epoch.iloc[best]),
            "final val Dice": float(h.val_dice.iloc[-1]),
            "epochs": len(h),
            "seconds": float(h.seconds.sum()),
            "s/epoch after the first": float(h.seconds.iloc[1:].mean()) if len(h) > 1 else float("nan"),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.astype({"best epoch": int, "epochs": int})


def scheduler_summary(table: pd.DataFrame, epochs: int, lr: float) -> str:
    """The sentence under notebook 05's table: the scheduler(s) with the best validation Dice (level ones:
    equal to `DECIMALS` decimals, as printed, are a tie), the spread from best to worst, and what the
    seconds count."""
    seconds = (
        " `seconds`: training and validation, as history.csv counts them; the first run's first epoch also "
        "carries one-off start-up costs, so `s/epoch after the first` is the one to compare, and only where nothing "
        "else ran beside the runs: a scheduler does not change the work of a step, other programs change its time."
    )
    scores = table["best val Dice"]
    top = leaders(scores)
    spread = f"{scores.max() - scores.min():.{DECIMALS}f}"
    best = f"({scores.max():.{DECIMALS}f})"
    if len(top) == len(scores) and len(top) > 1:
        return (
            f"With {epochs} epochs at peak lr {lr:g}, every scheduler ties for the best validation Dice "
            f"{best}: equal to {DECIMALS} decimals." + seconds
        )
    if len(top) > 1:
        lead = f"{names(top, bold=True)} tie for the best validation Dice {best}"
    else:
        lead = f"{names(top, bold=True)} reaches the best validation Dice {best}"
    return (
        f"With {epochs} epochs at peak lr {lr:g}, {lead}; the spread from best to worst scheduler is "
        f"{spread}." + seconds
    )


def train_once(cfg: TrainConfig) -> pd.DataFrame:
    """The history of `cfg`'s run, trained once: a finished run of the same config (`matching_runs`) is
    read, not trained again; one stopped part-way (Ctrl-C) goes on from its last.pt; else `fit` trains it.
    Says which, as notebook 06 does: a rerun of notebook 05 retrained every scheduler, finished or not."""
    found = matching_runs(cfg)
    for run_dir in found:
        if is_finished(run_dir):
            print(
                f"{run_dir.name}: trained before with this config; using its history (delete the folder to retrain)"
            )
            return load_history(run_dir)[0]
    stopped = next((run_dir for run_dir in found if (run_dir / "last.pt").is_file()), None)
    if stopped is not None:
        print(f"{stopped.name}: stopped part-way with this config; going on from its last.pt")
    return fit(cfg, resume=stopped or False).history

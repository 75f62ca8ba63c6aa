"""Learning-rate schedulers. OneCycle steps per batch; none, cosine, step and multistep per epoch."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, MultiStepLR, OneCycleLR, StepLR

from .config import SCHEDULERS, TrainConfig

__all__ = [
    "build_scheduler",
    "rescheduled",
    "steps_per_batch",
    "lr_curve",
    "dead_milestones_note",
    "PER_BATCH",
    "OWN_SCHEDULERS",
    "SchedulerFactory",
]

PER_BATCH = frozenset({"onecycle"})  # the others step once per epoch
# (cfg, optimizer, steps_per_epoch) -> scheduler: how a scheduler of the user's own is built
SchedulerFactory = Callable[[TrainConfig, torch.optim.Optimizer, int], LRScheduler]
# the user's, by name (seglib.engine.register_scheduler): the factory, and whether it steps per batch
OWN_SCHEDULERS: dict[str, tuple[SchedulerFactory, bool]] = {}


def steps_per_batch(name: str) -> bool:
    """True if the scheduler `name` steps after every optimizer step, False if after every epoch."""
    return name in PER_BATCH or (name in OWN_SCHEDULERS and OWN_SCHEDULERS[name][1])


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> LRScheduler:
    """The scheduler `cfg.scheduler` for `cfg.epochs` epochs of `steps_per_epoch` optimizer steps."""
    name = cfg.scheduler
    if name == "none":
        return LambdaLR(optimizer, lambda _: 1.0)
    if name == "cosine":
        return CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.min_lr)
    if name == "onecycle":
        return OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=cfg.pct_start
        )
    if name == "step":
        return StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if name == "multistep":
        milestones = cfg.milestones or [max(1, cfg.epochs // 2), max(1, (3 * cfg.epochs) // 4)]
        return MultiStepLR(optimizer, milestones=milestones, gamma=cfg.gamma)
    if name in OWN_SCHEDULERS:
        return OWN_SCHEDULERS[name][0](cfg, optimizer, steps_per_epoch)
    known = [*SCHEDULERS, *OWN_SCHEDULERS]
    raise ValueError(
        f"unknown scheduler {name!r}; choose one of {known} (one of your own: register_scheduler)"
    )


def dead_milestones_note(cfg: TrainConfig) -> str:
    """A line for a run whose multistep milestones reach its last epoch ("" if none do): MultiStepLR decays
    after epoch m, so those never act. Said, not refused: a budget's plan (`seglib.study.fit_to_budget`)
    can shorten a recipe's epochs below its milestones, and runs saved so still load and resume."""
    ms = cfg.milestones or []
    dead = [m for m in ms if m >= cfg.epochs]
    if cfg.scheduler != "multistep" or not dead:
        return ""
    return (
        f"seglib: milestones {dead} reach the last epoch (epochs={cfg.epochs}): multistep decays the lr after "
        f"epoch m, so {'it never acts' if len(dead) == 1 else 'they never act'} in this run"
    )


def rescheduled(
    cfg: TrainConfig,
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    steps_done: int,
    epochs_done: int,
) -> LRScheduler:
    """The scheduler of `cfg` advanced past `steps_done` optimizer steps (`epochs_done` epochs): the one a
    run re-planned to `cfg.epochs` continues with, as if planned so from its start. It sets the optimizer's
    lr (and OneCycle's momentum) to that schedule's value there."""
    for group in optimizer.param_groups:  # cosine, step and multistep go on from the group's lr: from the
        group["lr"] = group.get("initial_lr", group["lr"])  # start, not where the old plan had taken it
    sched = build_scheduler(cfg, optimizer, steps_per_epoch)
    with warnings.catch_warnings():  # stepping without optimizer steps is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(steps_done if steps_per_batch(cfg.scheduler) else epochs_done):
            sched.step()
    return sched


def lr_curve(cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    """The learning rate of every optimizer step of a run, computed without training."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = build_scheduler(cfg, opt, steps_per_epoch)
    lrs = []
    for _ in range(cfg.epochs):
        for _ in range(steps_per_epoch):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if steps_per_batch(cfg.scheduler):
                sched.step()
        if not steps_per_batch(cfg.scheduler):
            sched.step()
    return lrs

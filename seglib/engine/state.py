"""`TrainState`: everything a training run carries from step to step; its `state_dict()` is `last.pt`.

Saving it and loading it back is what makes a run resumable bit for bit: model, optimizer, lr
scheduler, loss scaler, EMA, the counters, the history, the best epoch, the epoch in progress and the
random generators.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from .distributed import all_gather_object, all_reduce_sum, is_distributed
from .ema import ModelEMA
from .runtime import rng_state, set_rng_state

__all__ = ["EpochStats", "TrainState"]


@dataclass
class EpochStats:
    """What one pass over a loader has summed so far (this rank's share, until `reduced`)."""

    step: int = 0  # batches done in this pass
    n_images: int = 0
    loss_sum: float = 0.0
    dice_sum: float = 0.0
    skipped: list[str] = field(default_factory=list)  # unreadable samples, named
    seconds: float = 0.0  # of training and validation in this epoch, before a stop

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.n_images, 1)

    @property
    def dice(self) -> float:
        return self.dice_sum / max(self.n_images, 1)

    def reduced(self, device: torch.device) -> EpochStats:
        """The sums (and skipped samples) of all ranks: every image counts once, not a mean of means."""
        if not is_distributed():
            return self
        sums = torch.tensor([self.loss_sum, self.dice_sum, self.n_images], dtype=torch.float64, device=device)
        loss_sum, dice_sum, n_images = all_reduce_sum(sums).tolist()
        skipped = [s for part in all_gather_object(self.skipped) for s in part]
        return EpochStats(self.step, int(n_images), loss_sum, dice_sum, skipped, self.seconds)


@dataclass
class TrainState:
    """The model and what trains it, with the run's counters and record."""

    model: nn.Module  # the bare model (not the DistributedDataParallel wrapper)
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    scaler: torch.amp.GradScaler
    ema: ModelEMA | None = None
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps so far, over the whole run
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per completed epoch
    lr_log: list[float] = field(default_factory=list)  # the learning rate of every optimizer step
    best_dice: float = -math.inf  # the best validation Dice so far, and its epoch
    best_epoch: int = 0
    partial: EpochStats = field(default_factory=EpochStats)  # the training pass of the epoch in progress

    @property
    def eval_model(self) -> nn.Module:
        """What is validated, saved as best.pt and returned: the EMA weights when the run keeps an EMA."""
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch,
            "global_step": self.step,
            "history": self.history,
            "lr_log": self.lr_log,
            "best_val_dice": self.best_dice,
            "best_epoch": self.best_epoch,
            "partial": asdict(self.partial) if self.partial.step else None,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.epoch = state["epoch"]
        self.history, self.lr_log = list(state["history"]), list(state["lr_log"])
        self.step = state.get("global_step", len(self.lr_log))
        self.best_dice, self.best_epoch = state["best_val_dice"], state["best_epoch"]
        self.partial = EpochStats(**state["partial"]) if state.get("partial") else EpochStats()
        set_rng_state(state["rng"])

"""One pass over a loader: `train_one_epoch` and `evaluate_epoch`, in the style of torchvision's references.

Loss and Dice are summed on the device; the host reads them every `log_every` steps (progress bar,
non-finite check, Ctrl-C) and at the end, so the loop does not wait for the device at every batch. In a
distributed run the sums are this rank's, and the ranks agree on stopping at those reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import CorruptSampleError, copy_paste, mixing_generator
from ..metrics import confusion_counts, dice_from_counts
from .batches import BatchPrep, ResidentLoader
from .compiled import CompileClock
from .config import TrainConfig
from .distributed import agree_to_stop, get_rank, is_distributed, is_main
from .hooks import EpochHook
from .interrupt import Interrupt
from .losses import LossFn
from .progress import progress_bar
from .progressive import shrink_batch
from .runtime import autocast, autocast_cache, seed_rank_step
from .schedulers import steps_per_batch
from .state import EpochStats, TrainState
from .threadloader import ThreadLoader
from .tta import forward_tta

__all__ = ["Env", "StopRequested", "NonFiniteLossError", "train_one_epoch", "evaluate_epoch"]

Batches = DataLoader[dict[str, Any]] | ResidentLoader | ThreadLoader  # the loaders the loops iterate


class StopRequested(Exception):
    """Ctrl-C was seen at a step boundary (by every rank): the caller saves `last.pt` and stops."""


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


@dataclass(frozen=True)
class Env:
    """What every step needs besides the data: where it computes, in which precision, with which loss,
    the Ctrl-C flag it stops on, what makes a loader's batch the model's input (`prep`), in a
    compiled run the clock of its first steps; and, once an epoch, `fit`'s `on_epoch` hook."""

    device: torch.device
    use_amp: bool
    loss_fn: LossFn
    interrupt: Interrupt
    prep: BatchPrep
    clock: CompileClock | None = None
    on_epoch: EpochHook | None = None


class _Meter:
    """The pass's sums, kept on the device and read by the host at `read`."""

    def __init__(self, stats: EpochStats, device: torch.device) -> None:
        self.stats = stats
        self.loss = torch.tensor(stats.loss_sum, device=device, dtype=torch.float64)
        self.dice = torch.tensor(stats.dice_sum, device=device, dtype=torch.float64)
        self.first_bad = torch.zeros((), device=device, dtype=torch.long)  # step of the first non-finite loss

    def add(self, loss: torch.Tensor, logits: torch.Tensor, masks: torch.Tensor, threshold: float) -> None:
        step = self.stats.step + 1
        self.first_bad = torch.where(
            (self.first_bad == 0) & ~torch.isfinite(loss.detach()), step, self.first_bad
        )
        b = masks.shape[0]
        self.loss += loss.detach().double() * b
        self.dice += dice_from_counts(*confusion_counts(logits.detach(), masks, threshold)).double().sum()
        self.stats.n_images += b
        self.stats.step = step

    def read(self, interrupt: Interrupt, agree: bool) -> bool:
        """Copy the sums to the stats; raise on a non-finite loss; return whether Ctrl-C asks to stop.

        In a distributed run only reads where all ranks are at the same step (`agree`) decide, for all.
        """
        self.stats.loss_sum, self.stats.dice_sum = self.loss.item(), self.dice.item()
        if is_distributed() and not agree:
            return False
        bad, stop = agree_to_stop(self.first_bad, interrupt.requested)
        if bad:
            raise NonFiniteLossError(bad)
        return stop


def _timing(clock: CompileClock | None, kind: str, images: torch.Tensor) -> CompileClock | None:
    """`clock` where it begins timing this step (a compiled run's first of its kind and batch size);
    None otherwise."""
    return clock if clock is not None and clock.start(kind, images.shape[0]) else None


def _bar(loader: Batches, cfg: TrainConfig, desc: str, initial: int, total: int) -> Any:
    show = cfg.progress and is_main()
    return progress_bar(
        loader,
        desc=desc,
        leave=False,
        disable=not show,
        dynamic_ncols=True,
        initial=initial,
        total=total,
        summarised=True,  # by the epoch's line
    )


def _after_step(
    meter: _Meter, env: Env, cfg: TrainConfig, total: int, agree: bool, bar: Any, lr: float | None
) -> None:
    """Every `log_every` steps (and at the last): read the sums for the bar; stop on Ctrl-C."""
    step, stop = meter.stats.step, False
    if step % cfg.log_every == 0 or step == total:
        stop = meter.read(env.interrupt, agree)
        post = {"loss": f"{meter.stats.loss:.4f}", "dice": f"{meter.stats.dice:.4f}"}
        if lr is not None:
            post["lr"] = f"{lr:.2e}"
        bar.set_postfix(post, refresh=False)
    if not is_distributed():  # a single process stops at the first step boundary after Ctrl-C
        stop = env.interrupt.requested
        if stop:
            meter.read(env.interrupt, agree=False)
    if stop:
        bar.n = step  # the steps done, this one too: tqdm counts a step when the loop asks for the next
        bar.close()  # kept as it stopped; the loop's own close, later, does nothing
        raise StopRequested


def _finish(meter: _Meter, env: Env, bar: Any) -> None:
    """The pass's last read; every rank ends its loop here once, so in a distributed run they can agree."""
    bar.close()
    if meter.read(env.interrupt, agree=True) and is_distributed():
        raise StopRequested


def _optimizer_step(state: TrainState, loss: torch.Tensor, cfg: TrainConfig) -> None:
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    state.scaler.step(state.optimizer)
    state.scaler.update()
    if state.ema is not None:
        state.ema.update(state.model)
    state.lr_log.append(state.optimizer.param_groups[0]["lr"])
    state.step += 1
    if steps_per_batch(cfg.scheduler):
        state.scheduler.step()


def _unusable(batch: dict[str, Any]) -> bool:
    """True where every sample of `batch` was unreadable (the loader skipped them all)."""
    if batch["image"] is not None:
        return False
    if is_distributed():  # the other ranks would wait for this rank's gradients
        raise CorruptSampleError(
            f"every sample of a batch on rank {get_rank()} is unreadable "
            f"({'; '.join(batch['skipped'][:3])}); a distributed run cannot skip a whole batch: "
            "remove the files or use a larger batch_size"
        )
    return True


def _training_batch(
    batch: dict[str, Any], state: TrainState, cfg: TrainConfig, env: Env, size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` on the device, augmented there for this step, mixed (copy-paste) and shrunk to `size`."""
    images, masks = env.prep(batch, state.step if cfg.augment else None)
    if cfg.augment and cfg.copy_paste > 0:
        images, masks = copy_paste(
            images, masks, cfg.copy_paste, mixing_generator(cfg.seed, state.step, get_rank())
        )
    if size is not None:
        images, masks = shrink_batch(images, masks, size, env.prep.channels_last)
    return images, masks


def train_one_epoch(
    net: nn.Module,
    state: TrainState,
    loader: DataLoader[dict[str, Any]] | ResidentLoader,
    cfg: TrainConfig,
    env: Env,
    total: int,
    desc: str = "",
    size: int | None = None,
) -> EpochStats:
    """Train `net` (the model, or its DDP wrapper) over `loader`, continuing `state.partial` (a resumed
    epoch starts where it stopped); `total` is the epoch's number of steps; `size`: the batches are shrunk
    to it (progressive resizing). Returns this rank's stats."""
    stats = state.partial
    net.train()
    meter, bar = _Meter(stats, env.device), _bar(loader, cfg, desc, stats.step, total)
    for batch in bar:
        stats.skipped += batch["skipped"]
        if _unusable(batch):
            stats.step += 1
            continue
        images, masks = _training_batch(batch, state, cfg, env, size)
        seed_rank_step(cfg.seed, state.step, get_rank())  # each rank its own dropout masks
        timing = _timing(env.clock, "training step", images)
        with autocast(env.device, env.use_amp):
            logits = forward_tta(net, images, tta=False)
        loss = env.loss_fn(logits, masks)
        meter.add(loss, logits, masks, cfg.threshold)
        _optimizer_step(state, loss, cfg)
        if timing is not None:
            timing.stop()
        # Ranks take the same training steps, so every read can be a point of agreement.
        _after_step(meter, env, cfg, total, True, bar, state.lr_log[-1])  # the lr this step took
    _finish(meter, env, bar)
    return stats


@torch.no_grad()
def evaluate_epoch(
    model: nn.Module, loader: Batches, cfg: TrainConfig, env: Env, desc: str = ""
) -> EpochStats:
    """Loss and Dice of `model` over `loader` at model resolution (flip TTA with `cfg.tta`); this
    rank's stats."""
    stats = EpochStats()
    model.eval()
    meter, bar = _Meter(stats, env.device), _bar(loader, cfg, desc, 0, len(loader))
    with autocast_cache(env.device):  # each weight cast to bf16 once, not once a batch
        for batch in bar:
            stats.skipped += batch["skipped"]
            if batch["image"] is None:
                stats.step += 1
                continue
            images, masks = env.prep(batch)
            timing = _timing(env.clock, "validation batch", images)
            with autocast(env.device, env.use_amp):
                logits = forward_tta(model, images, cfg.tta)
            meter.add(env.loss_fn(logits, masks), logits, masks, cfg.threshold)
            if timing is not None:
                timing.stop()
            # The ranks' validation shares may differ by one batch: only the final read is agreed.
            _after_step(meter, env, cfg, len(loader), False, bar, None)
    _finish(meter, env, bar)
    return stats

"""`fit(cfg)`: the whole training run, one call. AdamW + BCEWithLogits, validation every epoch,
`best.pt` (by validation Dice) and `last.pt`, and a run folder with config, history and the lr of
every step."""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import EpochSampler, OxfordPetDataset, collate, eval_transform, resolve_data_root, train_transform
from ..data.trimaps import IGNORE_INDEX
from ..metrics import confusion_counts, dice_from_counts
from ..models import build_model, count_parameters
from .checkpoint import model_spec, save_checkpoint
from .config import TrainConfig
from .io import atomic_write_csv
from .losses import bce_loss
from .runtime import (
    autocast,
    default_num_workers,
    prepare_model,
    resolve_device,
    seed_everything,
    to_device_batch,
)
from .schedulers import build_scheduler, steps_per_batch
from .tracking import WandbLogger

__all__ = ["fit", "FitResult", "make_datasets", "new_run_dir", "HISTORY_COLUMNS"]

HISTORY_COLUMNS = ["epoch", "train_loss", "train_dice", "val_loss", "val_dice", "lr", "seconds"]


@dataclass
class FitResult:
    """What `fit` returns: where the run lives, its history, and the trained model (last epoch)."""

    run_dir: Path
    history: pd.DataFrame
    best_val_dice: float
    best_epoch: int
    model: nn.Module
    config: TrainConfig
    data: str  # "oxford-pet" | "synthetic"
    data_root: Path  # the folder holding images/ and annotations/

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "last.pt"


def make_datasets(cfg: TrainConfig) -> tuple[OxfordPetDataset, OxfordPetDataset, str]:
    """The run's train and val datasets, and which data they are ("oxford-pet" | "synthetic")."""
    root, kind = resolve_data_root(cfg.data_root, cfg.dataset, cfg.synthetic_root)
    fill = IGNORE_INDEX if cfg.border == "ignore" else 0
    train_tf = (
        train_transform(cfg.image_size, mask_fill=fill) if cfg.augment else eval_transform(cfg.image_size)
    )
    train = OxfordPetDataset(root, "train", train_tf, border=cfg.border, limit=cfg.train_limit)
    val = OxfordPetDataset(
        root, "val", eval_transform(cfg.image_size), border=cfg.border, limit=cfg.val_limit
    )
    return train, val, kind


def new_run_dir(cfg: TrainConfig) -> Path:
    """results/runs/<run_name>; an existing run is never overwritten unless cfg.overwrite (a suffix is added)."""
    base = Path(cfg.output_dir)
    name = cfg.run_name or f"{cfg.model}-{cfg.scheduler}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = base / name
    if run_dir.exists() and cfg.overwrite:
        shutil.rmtree(run_dir)
    k = 2
    while run_dir.exists():
        run_dir = base / f"{name}-{k}"
        k += 1
    run_dir.mkdir(parents=True)
    return run_dir


def _loader(ds: OxfordPetDataset, cfg: TrainConfig, device: torch.device, shuffle: bool) -> DataLoader:
    workers = default_num_workers(device) if cfg.num_workers is None else cfg.num_workers
    # A last batch of one image breaks BatchNorm in training (1x1 maps at the bottom of the encoder).
    drop_last = shuffle and len(ds) % cfg.batch_size == 1
    return DataLoader(
        ds,
        batch_size=cfg.batch_size,
        sampler=EpochSampler(len(ds), shuffle=shuffle, seed=cfg.seed),
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        collate_fn=collate,
        drop_last=drop_last,
    )


def _run_epoch(
    model: nn.Module,
    loader: DataLoader,
    cfg: TrainConfig,
    device: torch.device,
    use_amp: bool,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    lr_log: list[float] | None = None,
    desc: str = "",
) -> dict[str, float]:
    """One pass over `loader`: trains when an optimizer is given, else evaluates. Mean loss and Dice.

    Loss and Dice are summed on the device; the host reads them every `log_every` steps (progress bar)
    and once at the end, so the loop does not wait on the device at every batch.
    """
    training = optimizer is not None
    model.train(training)
    loss_sum = torch.zeros((), device=device)
    dice_sum = torch.zeros((), device=device)
    n_images = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not cfg.progress, dynamic_ncols=True)
    with torch.set_grad_enabled(training):
        for step, batch in enumerate(bar, start=1):
            images, masks = to_device_batch(batch["image"], batch["mask"], device, cfg.channels_last)
            with autocast(device, use_amp):
                logits = model(images)
            loss = bce_loss(logits, masks)
            if training:
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                lr_log.append(optimizer.param_groups[0]["lr"])
                if steps_per_batch(cfg.scheduler):
                    scheduler.step()
            b = images.shape[0]
            loss_sum += loss.detach() * b
            dice_sum += dice_from_counts(*confusion_counts(logits.detach(), masks, cfg.threshold)).sum()
            n_images += b
            if cfg.progress and (step % cfg.log_every == 0 or step == len(loader)):
                post = {
                    "loss": f"{loss_sum.item() / n_images:.4f}",
                    "dice": f"{dice_sum.item() / n_images:.4f}",
                }
                if training:
                    post["lr"] = f"{optimizer.param_groups[0]['lr']:.2e}"
                bar.set_postfix(post, refresh=False)
    bar.close()
    return {"loss": loss_sum.item() / max(n_images, 1), "dice": dice_sum.item() / max(n_images, 1)}


def fit(cfg: TrainConfig) -> FitResult:
    """Train `cfg.model` on the run's data, validating every epoch; return the run's result."""
    cfg.validate()
    device = resolve_device(cfg.device)
    use_amp = bool(cfg.amp if cfg.amp is not None else device.type == "cuda") and device.type == "cuda"
    train_ds, val_ds, kind = make_datasets(cfg)
    seed_everything(cfg.seed)
    model = build_model(cfg.model, **cfg.model_kwargs)
    spec = model_spec(model, cfg.model, cfg.model_kwargs)
    model = prepare_model(model, device, cfg.channels_last)
    train_loader = _loader(train_ds, cfg, device, shuffle=True)
    val_loader = _loader(val_ds, cfg, device, shuffle=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = build_scheduler(cfg, optimizer, len(train_loader))
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)

    run_dir = new_run_dir(cfg)
    cfg.save(run_dir / "config.json")
    print(
        f"seglib: {cfg.model} ({count_parameters(model) / 1e6:.1f}M parameters) on {kind} data "
        f"({train_ds.root}): train {len(train_ds)} / val {len(val_ds)} images at {cfg.image_size} px, "
        f"batch {cfg.batch_size}, {cfg.epochs} epochs, scheduler {cfg.scheduler}, device {device}"
        f"{', amp' if use_amp else ''}; run folder {run_dir}"
    )
    tracker = WandbLogger(cfg.use_wandb, cfg.wandb_project, run_dir.name, cfg.to_dict(), run_dir)
    history: list[dict[str, float]] = []
    lr_log: list[float] = []
    best_dice, best_epoch = -math.inf, 0
    try:
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            train_loader.sampler.set_epoch(epoch)
            tr = _run_epoch(model, train_loader, cfg, device, use_amp, optimizer, scheduler, scaler, lr_log,
                            desc=f"epoch {epoch}/{cfg.epochs} train")  # fmt: skip
            va = _run_epoch(model, val_loader, cfg, device, use_amp, desc=f"epoch {epoch}/{cfg.epochs} val")
            epoch_lr = lr_log[-1]
            if not steps_per_batch(cfg.scheduler):
                scheduler.step()
            row = {"epoch": epoch, "train_loss": tr["loss"], "train_dice": tr["dice"], "val_loss": va["loss"],
                   "val_dice": va["dice"], "lr": epoch_lr, "seconds": time.perf_counter() - t0}  # fmt: skip
            history.append(row)
            tracker.log({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
            atomic_write_csv(pd.DataFrame(history, columns=HISTORY_COLUMNS), run_dir / "history.csv")
            lr_df = pd.DataFrame({"step": range(1, len(lr_log) + 1), "lr": lr_log})
            lr_df["epoch"] = (lr_df["step"] - 1) // len(train_loader) + 1
            atomic_write_csv(lr_df, run_dir / "lr.csv")
            extra = {"config": cfg.to_dict(), "epoch": epoch, "val_dice": va["dice"], "data": kind}
            if va["dice"] > best_dice:
                best_dice, best_epoch = va["dice"], epoch
                save_checkpoint(run_dir / "best.pt", model, spec, **extra)
            save_checkpoint(
                run_dir / "last.pt", model, spec, **extra, optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(), scaler=scaler.state_dict(), history=history,
                best_val_dice=best_dice, best_epoch=best_epoch, global_step=len(lr_log),
            )  # fmt: skip
            if cfg.progress:
                print(f"epoch {epoch:3d}/{cfg.epochs}: train loss {tr['loss']:.4f} dice {tr['dice']:.4f} | "
                      f"val loss {va['loss']:.4f} dice {va['dice']:.4f} | lr {epoch_lr:.2e} | {row['seconds']:.1f} s")  # fmt: skip
    finally:
        tracker.finish()
    return FitResult(run_dir, pd.DataFrame(history, columns=HISTORY_COLUMNS), best_dice, best_epoch,
                     model.eval(), cfg, kind, train_ds.root)  # fmt: skip

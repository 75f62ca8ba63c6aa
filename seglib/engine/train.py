"""`fit(cfg)`: the whole training run, one call.

AdamW + BCEWithLogits, validation every epoch, `best.pt` (by validation Dice) and `last.pt`, and a
run folder with config, history and the lr of every step. A run survives interruption: Ctrl-C stops
it cleanly between two steps after saving `last.pt`, and `fit(cfg, resume=True)` continues from there
to the same weights and history as an uninterrupted run.
"""

from __future__ import annotations

import math
import random
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import EpochSampler, OxfordPetDataset, collate, eval_transform, resolve_data_root, train_transform
from ..data.trimaps import IGNORE_INDEX
from ..metrics import confusion_counts, dice_from_counts
from ..models import build_model, count_parameters
from .checkpoint import load_checkpoint, model_spec, save_checkpoint
from .config import TrainConfig
from .io import atomic_write_csv
from .losses import bce_loss
from .runtime import (
    apply_determinism,
    autocast,
    default_num_workers,
    prepare_model,
    resolve_device,
    seed_everything,
    to_device_batch,
)  # fmt: skip
from .schedulers import build_scheduler, steps_per_batch
from .tracking import WandbLogger

__all__ = ["fit", "FitResult", "make_datasets", "new_run_dir", "HISTORY_COLUMNS", "TrainingInterrupted",
           "NonFiniteLossError", "RESUME_MAY_DIFFER"]  # fmt: skip

HISTORY_COLUMNS = ["epoch", "train_loss", "train_dice", "val_loss", "val_dice", "lr", "seconds", "skipped"]
# Settings a resumed run may change: they do not touch what is computed.
RESUME_MAY_DIFFER = frozenset(
    {"progress", "log_every", "num_workers", "use_wandb", "wandb_project", "overwrite", "run_name", "output_dir",
     "data_root", "synthetic_root", "device"}
)  # fmt: skip


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `fit`: `last.pt` was saved; the message says how to resume."""


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


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
    common = {"border": cfg.border, "on_corrupt": cfg.on_corrupt}
    train = OxfordPetDataset(root, "train", train_tf, limit=cfg.train_limit, **common)
    val = OxfordPetDataset(root, "val", eval_transform(cfg.image_size), limit=cfg.val_limit, **common)
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


def _find_resume_dir(cfg: TrainConfig, resume: bool | str | Path) -> Path:
    if not isinstance(resume, bool):
        path = Path(resume)
        run_dir = path.parent if path.suffix == ".pt" else path
    elif cfg.run_name:
        run_dir = Path(cfg.output_dir) / cfg.run_name
    else:  # the newest run with a last.pt
        runs = sorted(Path(cfg.output_dir).glob("*/last.pt"), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise FileNotFoundError(f"resume=True but {cfg.output_dir} holds no run with a last.pt; "
                                    "start a new run with resume=False")  # fmt: skip
        run_dir = runs[-1].parent
    if not (run_dir / "last.pt").is_file():
        raise FileNotFoundError(f"cannot resume: {run_dir / 'last.pt'} does not exist; runs live in "
                                f"{cfg.output_dir}/<run_name>/")  # fmt: skip
    return run_dir


def _check_resumable(cfg: TrainConfig, saved: dict[str, Any], path: Path) -> None:
    diff = {
        k: (saved.get(k), v)
        for k, v in cfg.to_dict().items()
        if k not in RESUME_MAY_DIFFER and saved.get(k) != v
    }
    if diff:
        lines = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ValueError(f"cannot resume {path}: the config differs ({lines}); resume with the saved "
                         "config (TrainConfig.load(run_dir / 'config.json')) or start a new run")  # fmt: skip


def _loader(ds: OxfordPetDataset, cfg: TrainConfig, device: torch.device, shuffle: bool) -> DataLoader:
    workers = default_num_workers(device) if cfg.num_workers is None else cfg.num_workers
    # A last batch of one image breaks BatchNorm in training (1x1 maps at the bottom of the encoder).
    drop_last = shuffle and len(ds) % cfg.batch_size == 1
    return DataLoader(
        ds,
        batch_size=cfg.batch_size,
        sampler=EpochSampler(len(ds), shuffle=shuffle, seed=cfg.seed),
        num_workers=workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate,
        drop_last=drop_last,
    )


@contextmanager
def _deferred_sigint():
    """Turn the first Ctrl-C into a flag that the loop checks between steps (a second one is immediate).

    So an interrupted run stops at a step boundary, where model, optimizer, scheduler and counters agree.
    """
    flag = {"set": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["set"]:
            raise KeyboardInterrupt
        flag["set"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class _EpochState:
    """What an epoch has accumulated so far; saved with `last.pt` when a run stops mid-epoch."""

    step: int = 0  # optimizer steps (batches) done in this epoch
    n_images: int = 0
    loss_sum: float = 0.0
    dice_sum: float = 0.0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _Stop(Exception):
    pass


def _run_epoch(
    model: nn.Module,
    loader: DataLoader,
    cfg: TrainConfig,
    device: torch.device,
    use_amp: bool,
    state: _EpochState,
    total_steps: int,
    stop_flag: dict[str, bool] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    lr_log: list[float] | None = None,
    desc: str = "",
) -> None:
    """One pass over `loader`, continuing `state`: trains when an optimizer is given, else evaluates.

    Loss and Dice are summed on the device; the host reads them every `log_every` steps (progress bar,
    non-finite check) and at the end, so the loop does not wait on the device at every batch.
    """
    training = optimizer is not None
    model.train(training)
    loss_sum = torch.tensor(state.loss_sum, device=device, dtype=torch.float64)
    dice_sum = torch.tensor(state.dice_sum, device=device, dtype=torch.float64)
    first_bad = torch.zeros((), device=device, dtype=torch.long)  # step of the first non-finite loss
    bar = tqdm(loader, desc=desc, leave=False, disable=not cfg.progress, dynamic_ncols=True,
               initial=state.step, total=total_steps)  # fmt: skip

    def sync() -> None:
        state.loss_sum, state.dice_sum = loss_sum.item(), dice_sum.item()
        bad = int(first_bad.item())
        if bad:
            raise NonFiniteLossError(bad)

    with torch.set_grad_enabled(training):
        for batch in bar:
            state.skipped += batch["skipped"]
            if batch["image"] is None:
                state.step += 1
                continue
            images, masks = to_device_batch(batch["image"], batch["mask"], device, cfg.channels_last)
            with autocast(device, use_amp):
                logits = model(images)
            loss = bce_loss(logits, masks)
            step = state.step + 1
            first_bad = torch.where((first_bad == 0) & ~torch.isfinite(loss.detach()), step, first_bad)
            if training:
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                lr_log.append(optimizer.param_groups[0]["lr"])
                if steps_per_batch(cfg.scheduler):
                    scheduler.step()
            b = images.shape[0]
            loss_sum += loss.detach().double() * b
            dice_sum += (
                dice_from_counts(*confusion_counts(logits.detach(), masks, cfg.threshold)).double().sum()
            )
            state.n_images += b
            state.step = step
            if step % cfg.log_every == 0 or step == total_steps:
                sync()
                post = {
                    "loss": f"{state.loss_sum / state.n_images:.4f}",
                    "dice": f"{state.dice_sum / state.n_images:.4f}",
                }
                if training:
                    post["lr"] = f"{optimizer.param_groups[0]['lr']:.2e}"
                bar.set_postfix(post, refresh=False)
            if stop_flag is not None and stop_flag["set"]:
                sync()
                raise _Stop
    bar.close()
    sync()


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(cfg: TrainConfig, resume: bool | str | Path = False) -> FitResult:
    """Train `cfg.model` on the run's data, validating every epoch; return the run's result.

    `resume=True` continues the run `cfg.run_name` (or the newest run in `cfg.output_dir`) from its
    `last.pt`; `resume=PATH` continues the run folder (or last.pt) at PATH.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    use_amp = bool(cfg.amp if cfg.amp is not None else device.type == "cuda") and device.type == "cuda"
    ckpt = None
    if resume:
        run_dir = _find_resume_dir(cfg, resume)
        ckpt = load_checkpoint(run_dir / "last.pt")
        _check_resumable(cfg, ckpt["config"], run_dir / "last.pt")
    train_ds, val_ds, kind = make_datasets(cfg)
    apply_determinism(cfg.deterministic)
    seed_everything(cfg.seed)
    model = build_model(cfg.model, **cfg.model_kwargs)
    spec = model_spec(model, cfg.model, cfg.model_kwargs)
    model = prepare_model(model, device, cfg.channels_last)
    train_loader = _loader(train_ds, cfg, device, shuffle=True)
    val_loader = _loader(val_ds, cfg, device, shuffle=False)
    steps_per_epoch = len(train_loader)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = build_scheduler(cfg, optimizer, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)

    history: list[dict[str, Any]] = []
    lr_log: list[float] = []
    best_dice, best_epoch, start_epoch = -math.inf, 0, 1
    partial = _EpochState()
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        history, lr_log = list(ckpt["history"]), list(ckpt["lr_log"])
        best_dice, best_epoch = ckpt["best_val_dice"], ckpt["best_epoch"]
        start_epoch = ckpt["epoch"] + 1
        if ckpt.get("partial"):
            partial = _EpochState(**ckpt["partial"])
        _set_rng_state(ckpt["rng"])
        where = (
            f"epoch {start_epoch}, step {partial.step}"
            if partial.step
            else f"the start of epoch {start_epoch}"
        )
        print(f"seglib: resuming {run_dir} at {where} of {cfg.epochs}")
    else:
        run_dir = new_run_dir(cfg)
        cfg.save(run_dir / "config.json")
    print(
        f"seglib: {cfg.model} ({count_parameters(model) / 1e6:.1f}M parameters) on {kind} data "
        f"({train_ds.root}): train {len(train_ds)} / val {len(val_ds)} images at {cfg.image_size} px, "
        f"batch {cfg.batch_size}, {cfg.epochs} epochs, scheduler {cfg.scheduler}, device {device}"
        f"{', amp' if use_amp else ''}; run folder {run_dir}"
    )

    def save_last(epoch_done: int, partial_state: _EpochState | None) -> None:
        save_checkpoint(
            run_dir / "last.pt", model, spec, config=cfg.to_dict(), epoch=epoch_done, data=kind,
            val_dice=history[-1]["val_dice"] if history else None, optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(), scaler=scaler.state_dict(), history=history, lr_log=lr_log,
            best_val_dice=best_dice, best_epoch=best_epoch, global_step=len(lr_log), rng=_rng_state(),
            partial=partial_state.__dict__ if partial_state else None,
        )  # fmt: skip

    tracker = WandbLogger(cfg.use_wandb, cfg.wandb_project, run_dir.name, cfg.to_dict(), run_dir)
    epoch = start_epoch
    try:
        with _deferred_sigint() as stop_flag:
            for epoch in range(start_epoch, cfg.epochs + 1):
                t0 = time.perf_counter() - partial.seconds
                tr, partial = partial, _EpochState()
                train_loader.sampler.set_epoch(epoch, start=tr.step * cfg.batch_size)
                try:
                    _run_epoch(model, train_loader, cfg, device, use_amp, tr, steps_per_epoch, stop_flag, optimizer,
                               scheduler, scaler, lr_log, desc=f"epoch {epoch}/{cfg.epochs} train")  # fmt: skip
                    va = _EpochState()
                    _run_epoch(model, val_loader, cfg, device, use_amp, va, len(val_loader), stop_flag,
                               desc=f"epoch {epoch}/{cfg.epochs} val")  # fmt: skip
                except _Stop:
                    tr.seconds = time.perf_counter() - t0
                    save_last(epoch - 1, tr)
                    raise TrainingInterrupted(
                        f"training stopped in epoch {epoch} after step {tr.step} of {steps_per_epoch}; "
                        f"{run_dir / 'last.pt'} holds everything up to there. Resume with "
                        f"fit(cfg, resume={str(run_dir)!r}) or `python -m seglib train ... --resume {run_dir}`"
                    ) from None
                except NonFiniteLossError as e:
                    raise NonFiniteLossError(
                        f"the loss became NaN or infinite in epoch {epoch} at step {e.args[0]}; training stopped. "
                        f"{run_dir / 'last.pt'} holds the last good state (end of epoch {epoch - 1}). "
                        f"Lower the learning rate (lr={cfg.lr:g}), check the data, or turn amp off"
                    ) from None
                epoch_lr = lr_log[-1] if lr_log else optimizer.param_groups[0]["lr"]
                if not steps_per_batch(cfg.scheduler):
                    scheduler.step()
                skipped = tr.skipped + va.skipped
                row = {"epoch": epoch, "train_loss": tr.loss_sum / max(tr.n_images, 1),
                       "train_dice": tr.dice_sum / max(tr.n_images, 1), "val_loss": va.loss_sum / max(va.n_images, 1),
                       "val_dice": va.dice_sum / max(va.n_images, 1), "lr": epoch_lr,
                       "seconds": time.perf_counter() - t0, "skipped": len(skipped)}  # fmt: skip
                history.append(row)
                tracker.log({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
                atomic_write_csv(pd.DataFrame(history, columns=HISTORY_COLUMNS), run_dir / "history.csv")
                lr_df = pd.DataFrame({"step": range(1, len(lr_log) + 1), "lr": lr_log})
                lr_df["epoch"] = (lr_df["step"] - 1) // steps_per_epoch + 1
                atomic_write_csv(lr_df, run_dir / "lr.csv")
                if row["val_dice"] > best_dice:
                    best_dice, best_epoch = row["val_dice"], epoch
                    save_checkpoint(run_dir / "best.pt", model, spec, config=cfg.to_dict(), epoch=epoch,
                                    val_dice=row["val_dice"], data=kind)  # fmt: skip
                save_last(epoch, None)
                if skipped:
                    print(
                        f"epoch {epoch}: skipped {len(skipped)} unreadable sample(s): {'; '.join(skipped[:5])}"
                    )
                if cfg.progress:
                    print(f"epoch {epoch:3d}/{cfg.epochs}: train loss {row['train_loss']:.4f} dice "
                          f"{row['train_dice']:.4f} | val loss {row['val_loss']:.4f} dice {row['val_dice']:.4f} | "
                          f"lr {epoch_lr:.2e} | {row['seconds']:.1f} s")  # fmt: skip
    finally:
        tracker.finish()
    return FitResult(run_dir, pd.DataFrame(history, columns=HISTORY_COLUMNS), best_dice, best_epoch,
                     model.eval(), cfg, kind, train_ds.root)  # fmt: skip

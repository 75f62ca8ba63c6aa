"""`fit(cfg)`: the whole training run, one call.

AdamW + BCEWithLogits, validation every epoch, `best.pt` (by validation Dice) and `last.pt`, and a
run folder with config, history and the lr of every step. A run survives interruption: Ctrl-C stops
it cleanly between two steps after saving `last.pt`, and `fit(cfg, resume=True)` continues from there
to the same weights and history as an uninterrupted run.

The same call trains with DistributedDataParallel when torchrun starts it in several processes (see
`distributed`): each rank takes its share of every batch, metrics are summed over the ranks, and rank 0
alone writes the run folder.
"""

from __future__ import annotations

import math
import random
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import (
    CorruptSampleError,
    EpochSampler,
    OxfordPetDataset,
    collate,
    copy_paste,
    eval_transform,
    mixing_generator,
    resolve_data_root,
    train_transform,
)
from ..data.trimaps import IGNORE_INDEX
from ..metrics import confusion_counts, dice_from_counts
from ..models import build_model, count_parameters
from .checkpoint import load_checkpoint, model_spec, save_checkpoint
from .config import TrainConfig
from .distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_max,
    all_reduce_min,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    cleanup,
    convert_sync_batchnorm,
    get_rank,
    init_distributed,
    is_distributed,
    is_main,
    main_first,
    on_main,
    wrap_model,
)
from .ema import ModelEMA
from .evaluate import forward_tta
from .io import atomic_write_csv
from .losses import bce_loss, soft_dice_loss
from .progress import progress_bar
from .runtime import (
    amp_dtype,
    apply_determinism,
    autocast,
    default_amp,
    default_num_workers,
    prepare_model,
    seed_everything,
    to_device_batch,
)
from .schedulers import build_scheduler, steps_per_batch
from .tracking import WandbLogger

__all__ = [
    "fit",
    "FitResult",
    "make_datasets",
    "new_run_dir",
    "HISTORY_COLUMNS",
    "TrainingInterrupted",
    "NonFiniteLossError",
    "RESUME_MAY_DIFFER",
]

HISTORY_COLUMNS = ["epoch", "train_loss", "train_dice", "val_loss", "val_dice", "lr", "seconds", "skipped"]
# Settings a resumed run may change: they do not touch what is computed.
RESUME_MAY_DIFFER = frozenset(
    {
        "progress",
        "log_every",
        "num_workers",
        "use_wandb",
        "wandb_project",
        "overwrite",
        "run_name",
        "output_dir",
        "data_root",
        "synthetic_root",
        "device",
        "cache",
        "cache_dir",
        "checkpoint_every",
    }
)


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
    is_main: bool = True  # False on the ranks > 0 of a distributed run (they write nothing)

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
        train_transform(cfg.image_size, mask_fill=fill, scale_jitter=cfg.scale_jitter)
        if cfg.augment
        else eval_transform(cfg.image_size)
    )
    common = {"border": cfg.border, "on_corrupt": cfg.on_corrupt}
    train = OxfordPetDataset(root, "train", train_tf, limit=cfg.train_limit, **common)
    val = OxfordPetDataset(root, "val", eval_transform(cfg.image_size), limit=cfg.val_limit, **common)
    if cfg.cache:  # decode once; the samples are bit-identical to uncached ones
        cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.output_dir).parent / "cache"
        train.use_cache(cache_dir, cfg.image_size)
        val.use_cache(cache_dir, cfg.image_size)
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
            raise FileNotFoundError(
                f"resume=True but {cfg.output_dir} holds no run with a last.pt; "
                "start a new run with resume=False"
            )
        run_dir = runs[-1].parent
    if not (run_dir / "last.pt").is_file():
        raise FileNotFoundError(
            f"cannot resume: {run_dir / 'last.pt'} does not exist; runs live in {cfg.output_dir}/<run_name>/"
        )
    return run_dir


def _check_resumable(cfg: TrainConfig, saved: dict[str, Any], path: Path) -> None:
    # A setting added after the run was saved counts as its default (the run was trained that way).
    saved = {**{f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}, **saved}
    diff = {
        k: (saved.get(k), v)
        for k, v in cfg.to_dict().items()
        if k not in RESUME_MAY_DIFFER and saved.get(k) != v
    }
    if diff:
        lines = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ValueError(
            f"cannot resume {path}: the config differs ({lines}); resume with the saved "
            "config (TrainConfig.load(run_dir / 'config.json')) or start a new run"
        )


def _loader(ds: OxfordPetDataset, cfg: TrainConfig, info: DistInfo, train: bool) -> DataLoader:
    device = info.device
    workers = cfg.num_workers
    if workers is None:
        workers = default_num_workers(device, info.local_world_size)
    # This rank's share. Training shares are padded to equal length, so that the ranks step together;
    # validation shares are not, so that the sums over the ranks count every image once.
    sampler = EpochSampler(
        len(ds),
        shuffle=train and cfg.shuffle,
        seed=cfg.seed,
        rank=info.rank,
        world_size=info.world_size,
        pad=train,
    )
    # A last batch of one image breaks BatchNorm in training (1x1 maps at the bottom of the encoder).
    drop_last = train and sampler.num_samples % cfg.batch_size == 1
    return DataLoader(
        ds,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,  # the sampler, not the workers' state, decides each epoch's data
        prefetch_factor=4 if workers > 0 else None,
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


_NO_BAD_STEP = 2**62  # "no non-finite loss" when the ranks take the minimum of their first bad steps


def _reduced(state: _EpochState, device: torch.device) -> _EpochState:
    """`state` with the sums (and skipped samples) of all ranks; `state` itself in a single process."""
    if not is_distributed():
        return state
    sums = torch.tensor([state.loss_sum, state.dice_sum, state.n_images], dtype=torch.float64, device=device)
    loss_sum, dice_sum, n_images = all_reduce_sum(sums).tolist()
    skipped = [s for part in all_gather_object(state.skipped) for s in part]
    return _EpochState(state.step, int(n_images), loss_sum, dice_sum, skipped, state.seconds)


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
    ema: ModelEMA | None = None,
    ema_source: nn.Module | None = None,
) -> None:
    """One pass over `loader`, continuing `state`: trains when an optimizer is given, else evaluates.

    Loss and Dice are summed on the device; the host reads them every `log_every` steps (progress bar,
    non-finite check) and at the end, so the loop does not wait on the device at every batch. In a
    distributed run the sums are this rank's; the ranks agree on stopping at those reads.
    """
    training = optimizer is not None
    tta = cfg.tta and not training
    collective = is_distributed()
    model.train(training)
    loss_sum = torch.tensor(state.loss_sum, device=device, dtype=torch.float64)
    dice_sum = torch.tensor(state.dice_sum, device=device, dtype=torch.float64)
    first_bad = torch.zeros((), device=device, dtype=torch.long)  # step of the first non-finite loss
    bar = progress_bar(
        loader,
        desc=desc,
        leave=False,
        disable=not (cfg.progress and is_main()),
        dynamic_ncols=True,
        initial=state.step,
        total=total_steps,
    )

    def sync(agree: bool = False) -> bool:
        """Read the sums; raise on a non-finite loss; return whether Ctrl-C asks to stop.

        A rank that stopped or raised alone would leave the others waiting in their next collective, so in a
        distributed run only reads where all ranks are at the same step (`agree`) decide, for all of them.
        """
        state.loss_sum, state.dice_sum = loss_sum.item(), dice_sum.item()
        if collective and not agree:
            return False
        bad = first_bad
        stop = torch.tensor(int(stop_flag is not None and stop_flag["set"]), device=device)
        if agree:
            bad = all_reduce_min(torch.where(bad == 0, _NO_BAD_STEP, bad))
            bad = torch.where(bad == _NO_BAD_STEP, 0, bad)
            stop = all_reduce_max(stop)
        if int(bad.item()):
            raise NonFiniteLossError(int(bad.item()))
        return bool(stop.item())

    with torch.set_grad_enabled(training):
        for batch in bar:
            state.skipped += batch["skipped"]
            if batch["image"] is None:
                if collective and training:  # the other ranks would wait for this rank's gradients
                    raise CorruptSampleError(
                        f"every sample of a batch on rank {get_rank()} is unreadable "
                        f"({'; '.join(batch['skipped'][:3])}); a distributed run cannot skip a whole batch: "
                        "remove the files or use a larger batch_size"
                    )
                state.step += 1
                continue
            images, masks = to_device_batch(batch["image"], batch["mask"], device, cfg.channels_last)
            if training and cfg.augment and cfg.copy_paste > 0:
                gen = mixing_generator(cfg.seed, len(lr_log), get_rank())
                images, masks = copy_paste(images, masks, cfg.copy_paste, gen)
            with autocast(device, use_amp):
                logits = forward_tta(model, images, tta)
            loss = bce_loss(logits, masks)
            if cfg.loss == "bce_dice":
                loss = loss + soft_dice_loss(logits, masks)
            step = state.step + 1
            first_bad = torch.where((first_bad == 0) & ~torch.isfinite(loss.detach()), step, first_bad)
            if training:
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update(ema_source)
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
            stop = False
            if step % cfg.log_every == 0 or step == total_steps:
                # Ranks take the same training steps, but their validation shares may differ by one batch.
                stop = sync(agree=collective and training)
                post = {
                    "loss": f"{state.loss_sum / state.n_images:.4f}",
                    "dice": f"{state.dice_sum / state.n_images:.4f}",
                }
                if training:
                    post["lr"] = f"{optimizer.param_groups[0]['lr']:.2e}"
                bar.set_postfix(post, refresh=False)
            if not collective:  # a single process stops at the first step boundary after Ctrl-C
                stop = stop_flag is not None and stop_flag["set"]
                if stop:
                    sync()
            if stop:
                raise _Stop
    bar.close()
    if sync(agree=collective) and collective:  # every rank ends its loop here once: they can agree
        raise _Stop


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

    Started by torchrun in several processes, every process runs this call and trains with
    DistributedDataParallel: `cfg.batch_size` is each process's share of a batch, rank 0 writes the run
    folder, and every rank returns the same history and weights.
    """
    cfg.validate()
    info = init_distributed(cfg.device)
    try:
        return _fit(cfg, resume, info)
    finally:
        cleanup(info)


def _fit(cfg: TrainConfig, resume: bool | str | Path, info: DistInfo) -> FitResult:
    device, main = info.device, info.is_main
    say = print if main else _silent
    use_amp = default_amp(device) if cfg.amp is None else bool(cfg.amp)
    ckpt = None
    if resume:
        run_dir = on_main(lambda: _find_resume_dir(cfg, resume))  # the ranks must agree on "the newest run"
        ckpt = load_checkpoint(run_dir / "last.pt")
        _check_resumable(cfg, ckpt["config"], run_dir / "last.pt")
        saved_world = ckpt.get("world_size", 1)
        if saved_world != info.world_size:
            raise ValueError(
                f"cannot resume {run_dir / 'last.pt'}: it was trained in {saved_world} process(es), this "
                f"run has {info.world_size}; the steps per epoch and the lr schedule depend on it. Resume "
                "with as many processes (torchrun --nnodes x --nproc_per_node)"
            )
    # Rank 0 first: it makes the synthetic set if needed, the others then find it.
    train_ds, val_ds, kind = main_first(lambda: make_datasets(cfg))
    apply_determinism(cfg.deterministic)
    seed_everything(cfg.seed)
    model = build_model(cfg.model, **cfg.model_kwargs)
    spec = model_spec(model, cfg.model, cfg.model_kwargs)
    if cfg.sync_bn and info.distributed:
        model = convert_sync_batchnorm(model, device)
    model = prepare_model(model, device, cfg.channels_last)
    # `net` trains (DDP in a distributed run); `model` is what is saved and validated.
    net = wrap_model(model, info)
    train_loader = _loader(train_ds, cfg, info, train=True)
    val_loader = _loader(val_ds, cfg, info, train=False)
    steps_per_epoch = len(train_loader)  # per rank, which is also the number of global optimizer steps
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # With EMA, the averaged weights are the run's model: validated, saved as best.pt, returned.
    ema = ModelEMA(model, cfg.ema_decay) if cfg.ema_decay else None
    eval_model = ema.module if ema is not None else model
    scheduler = build_scheduler(cfg, optimizer, steps_per_epoch)
    # Loss scaling is for fp16 only; bf16 has fp32's range.
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype(device) == torch.float16)

    history: list[dict[str, Any]] = []
    lr_log: list[float] = []
    best_dice, best_epoch, start_epoch = -math.inf, 0, 1
    partial = _EpochState()
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        history, lr_log = list(ckpt["history"]), list(ckpt["lr_log"])
        best_dice, best_epoch = ckpt["best_val_dice"], ckpt["best_epoch"]
        start_epoch = ckpt["epoch"] + 1
        if ckpt.get("partial"):
            partial = _EpochState(**ckpt["partial"])
            if not main:  # the saved sums are all ranks' (see _reduced): rank 0 carries them, the others add
                partial = _EpochState(step=partial.step, seconds=partial.seconds)
        _set_rng_state(ckpt["rng"])
        where = (
            f"epoch {start_epoch}, step {partial.step}"
            if partial.step
            else f"the start of epoch {start_epoch}"
        )
        say(f"seglib: resuming {run_dir} at {where} of {cfg.epochs}")
    else:
        run_dir = on_main(lambda: _create_run(cfg))
    batch = f"batch {cfg.batch_size}"
    if info.distributed:
        effective = cfg.batch_size * info.world_size
        batch += (
            f" per process x {info.world_size} processes = {effective} effective "
            f"({info.backend}{', sync_bn' if cfg.sync_bn else ''})"
        )
    precision = f"{str(amp_dtype(device)).removeprefix('torch.')} autocast" if use_amp else "fp32"
    say(
        f"seglib: {cfg.model} ({count_parameters(model) / 1e6:.1f}M parameters) on {kind} data "
        f"({train_ds.root}): train {len(train_ds)} / val {len(val_ds)} images at {cfg.image_size} px, "
        f"{batch}, {cfg.epochs} epochs, scheduler {cfg.scheduler}, device {device}"
        f", {precision}; run folder {run_dir}"
    )

    def save_last(epoch_done: int, partial_state: _EpochState | None) -> None:
        if not main:
            return
        save_checkpoint(
            run_dir / "last.pt",
            model,
            spec,
            config=cfg.to_dict(),
            epoch=epoch_done,
            data=kind,
            val_dice=history[-1]["val_dice"] if history else None,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict(),
            history=history,
            lr_log=lr_log,
            best_val_dice=best_dice,
            best_epoch=best_epoch,
            global_step=len(lr_log),
            rng=_rng_state(),
            partial=partial_state.__dict__ if partial_state else None,
            world_size=info.world_size,
            ema=ema.state_dict() if ema is not None else None,
        )

    launcher = "torchrun ... -m seglib" if info.distributed else "python -m seglib"  # for the resume hint
    tracker = WandbLogger(cfg.use_wandb and main, cfg.wandb_project, run_dir.name, cfg.to_dict(), run_dir)
    epoch = start_epoch
    try:
        with _deferred_sigint() as stop_flag:
            for epoch in range(start_epoch, cfg.epochs + 1):
                t0 = time.perf_counter() - partial.seconds
                tr, partial = partial, _EpochState()
                train_loader.sampler.set_epoch(epoch, start=tr.step * cfg.batch_size)
                try:
                    _run_epoch(
                        net,
                        train_loader,
                        cfg,
                        device,
                        use_amp,
                        tr,
                        steps_per_epoch,
                        stop_flag,
                        optimizer,
                        scheduler,
                        scaler,
                        lr_log,
                        desc=f"epoch {epoch}/{cfg.epochs} train",
                        ema=ema,
                        ema_source=model,
                    )
                    # Rank 0's BatchNorm statistics everywhere: what it saves is what every rank validates.
                    broadcast_buffers(model)
                    if ema is not None:
                        broadcast_buffers(ema.module)
                    va = _EpochState()
                    _run_epoch(
                        eval_model,
                        val_loader,
                        cfg,
                        device,
                        use_amp,
                        va,
                        len(val_loader),
                        stop_flag,
                        desc=f"epoch {epoch}/{cfg.epochs} val",
                    )
                except _Stop:
                    tr.seconds = time.perf_counter() - t0
                    save_last(epoch - 1, _reduced(tr, device))
                    barrier()  # the ranks leave together, once last.pt is complete
                    raise TrainingInterrupted(
                        f"training stopped in epoch {epoch} after step {tr.step} of {steps_per_epoch}; "
                        f"{run_dir / 'last.pt'} holds everything up to there. Resume with "
                        f"fit(cfg, resume={str(run_dir)!r}) or `{launcher} train ... --resume {run_dir}`"
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
                # Sums over all ranks' images, not a mean of the ranks' means.
                tr, va = _reduced(tr, device), _reduced(va, device)
                skipped = tr.skipped + va.skipped
                row = {
                    "epoch": epoch,
                    "train_loss": tr.loss_sum / max(tr.n_images, 1),
                    "train_dice": tr.dice_sum / max(tr.n_images, 1),
                    "val_loss": va.loss_sum / max(va.n_images, 1),
                    "val_dice": va.dice_sum / max(va.n_images, 1),
                    "lr": epoch_lr,
                    "seconds": time.perf_counter() - t0,
                    "skipped": len(skipped),
                }
                history.append(row)
                tracker.log({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
                if main:
                    atomic_write_csv(pd.DataFrame(history, columns=HISTORY_COLUMNS), run_dir / "history.csv")
                    lr_df = pd.DataFrame({"step": range(1, len(lr_log) + 1), "lr": lr_log})
                    lr_df["epoch"] = (lr_df["step"] - 1) // steps_per_epoch + 1
                    atomic_write_csv(lr_df, run_dir / "lr.csv")
                if row["val_dice"] > best_dice:
                    best_dice, best_epoch = row["val_dice"], epoch
                    if main:
                        save_checkpoint(
                            run_dir / "best.pt",
                            eval_model,
                            spec,
                            config=cfg.to_dict(),
                            epoch=epoch,
                            val_dice=row["val_dice"],
                            data=kind,
                        )
                if (
                    main
                    and cfg.checkpoint_every
                    and (epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs)
                ):
                    # For Dice-versus-time curves: the model as it stood after this many seconds of training.
                    save_checkpoint(
                        run_dir / "epochs" / f"epoch_{epoch:03d}.pt",
                        eval_model,
                        spec,
                        config=cfg.to_dict(),
                        epoch=epoch,
                        val_dice=row["val_dice"],
                        data=kind,
                        train_seconds=sum(r["seconds"] for r in history),
                    )
                save_last(epoch, None)
                if skipped:
                    say(
                        f"epoch {epoch}: skipped {len(skipped)} unreadable sample(s): {'; '.join(skipped[:5])}"
                    )
                if cfg.progress:
                    say(
                        f"epoch {epoch:3d}/{cfg.epochs}: train loss {row['train_loss']:.4f} dice "
                        f"{row['train_dice']:.4f} | val loss {row['val_loss']:.4f} dice {row['val_dice']:.4f} | "
                        f"lr {epoch_lr:.2e} | {row['seconds']:.1f} s"
                    )
    finally:
        tracker.finish()
    barrier()  # a caller on any rank may read the run folder once fit returns
    return FitResult(
        run_dir,
        pd.DataFrame(history, columns=HISTORY_COLUMNS),
        best_dice,
        best_epoch,
        eval_model.eval(),
        cfg,
        kind,
        train_ds.root,
        main,
    )


def _create_run(cfg: TrainConfig) -> Path:
    run_dir = new_run_dir(cfg)
    cfg.save(run_dir / "config.json")
    return run_dir


def _silent(*args: Any, **kwargs: Any) -> None:
    """`print` on the ranks > 0: one process speaks for the run."""

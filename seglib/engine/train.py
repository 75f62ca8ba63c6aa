"""`fit(cfg)`: the whole training run, one call.

AdamW + BCEWithLogits, validation every epoch, `best.pt` (by validation Dice) and `last.pt`, and a
run folder with config, history and the lr of every step (`runs.RunFolder`). A run survives
interruption: Ctrl-C stops it cleanly between two steps after saving `last.pt` (the whole `TrainState`),
and `fit(cfg, resume=True)` continues from there to the same weights and history as an uninterrupted run.

The same call trains with DistributedDataParallel when torchrun starts it in several processes (see
`distributed`): each rank takes its share of every batch, metrics are summed over the ranks, and rank 0
alone writes the run folder.
"""

from __future__ import annotations

import time
import warnings
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..allocator import release_idle_memory
from ..data import CorruptSampleError, DeviceAugment, EpochSampler, SegmentationDataset, write_splits
from ..metrics import IGNORE_INDEX
from ..models import build_model
from .batches import BatchPrep, ResidentLoader, resident_bytes, resident_fits
from .budget import SizeAt, kept_plan_note, next_plan
from .checkpoint import TRAINED_SIZE, model_spec
from .compiled import CompileClock, choose_compile, compile_module, compile_room
from .config import TrainConfig
from .distributed import (
    DistInfo,
    all_gather_object,
    barrier,
    broadcast_buffers,
    cleanup,
    convert_sync_batchnorm,
    init_distributed,
    is_main,
    main_first,
    on_main,
    wrap_model,
)
from .ema import ModelEMA
from .environment import run_environment
from .fastpath import choose_memory_format
from .hooks import EpochEnd, EpochHook, EpochHookError, HookFailure, OnEpoch
from .interrupt import Interrupt, deferred_sigint
from .loaders import eval_loader, make_datasets, run_device_data, train_loader, train_steps_per_epoch
from .loop import Env, NonFiniteLossError, StopRequested, evaluate_epoch, train_one_epoch
from .losses import LossFn, build_loss
from .messages import (
    UNSAVED,
    describe_run,
    epochs_said,
    lost_process_advice,
    report_epoch,
    resume_command,
    say,
)
from .optimizer import build_optimizer, optimizer_name
from .progress import start_new_displays
from .progressive import epoch_size
from .runs import (
    HISTORY_COLUMNS,
    RESUME_MAY_DIFFER,
    RunFolder,
    history_frame,
    load_resume_checkpoint,
    new_run,
    patience_spent,
    resume_notes,
    resumed_run,
)
from .runtime import (
    amp_dtype,
    apply_determinism,
    default_amp,
    default_num_workers,
    determinism_kept,
    prepare_model,
    seed_everything,
)
from .schedulers import build_scheduler, dead_milestones_note, rescheduled, steps_per_batch
from .state import EpochStats, TrainState
from .threadloader import ThreadLoader
from .tracking import WandbLogger
from .workers import death_said, ended_workers, exit_code, settled, stop_workers

__all__ = [
    "fit",
    "FitResult",
    "TrainingInterrupted",
    "NonFiniteLossError",
    "EpochEnd",
    "EpochHookError",
    "HISTORY_COLUMNS",
    "RESUME_MAY_DIFFER",
    "make_datasets",
    "new_run",
]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `fit`: the message says what was saved (`last.pt`, from where it stopped or before)
    and how to go on. `saved`: whether last.pt holds where it stopped."""

    saved = True


@dataclass
class FitResult:
    """What `fit` returns: where the run lives, its history, and the trained model (last epoch)."""

    run_dir: Path
    history: pd.DataFrame
    best_val_dice: float
    best_epoch: int
    model: nn.Module
    config: TrainConfig
    data: str  # "oxford-pet" | "synthetic" | "folder"
    data_root: Path  # the folder holding images/ and annotations/ (a folder data set: images/, masks/)
    is_main: bool = True  # False on the ranks > 0 of a distributed run (they write nothing)

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "last.pt"


def fit(
    cfg: TrainConfig,
    resume: bool | str | Path = False,
    loss_fn: LossFn | None = None,
    on_epoch: OnEpoch | None = None,
) -> FitResult:
    """Train `cfg.model` on the run's data, validating every epoch; return the run's result.

    `resume=True` continues the newest run called `cfg.run_name` (NAME-2, ... included; or the newest
    run in `cfg.output_dir`) from its `last.pt`; `resume=PATH` continues the run folder (or last.pt) at
    PATH. `loss_fn(logits, target)` stands in for the loss `cfg.loss` names (the tests' way to stop a run
    at a given step): the run still records `cfg.loss`, and a resume uses that. A loss of your own:
    `register_loss`, then `cfg.loss` names it.

    `on_epoch(end)`, given an `EpochEnd` after each epoch's validation, returns None or {name: number}:
    metrics of your own in the epoch's history row (history.csv, last.pt, W&B). Its time is yours: not in
    the row's seconds, nor in what `budget_minutes` plans by.

    It seeds Python's, NumPy's and torch's global generators from `cfg.seed` (a notebook's later cells draw
    the same numbers on every run) and puts back the determinism switches it sets when it returns.

    Started by torchrun in several processes, every process runs this call and trains with
    DistributedDataParallel: `cfg.batch_size` is each process's share of a batch, rank 0 writes the run
    folder, and every rank returns the same history and weights.
    """
    cfg.validate()
    start_new_displays()  # in JupyterLab: this training's bar above its own lines, not an earlier one's
    info = init_distributed(cfg.device)
    try:
        _check_same_settings(cfg)
        if loss_fn is not None and info.is_main:  # what trains is not what config.json will name
            print(
                f"seglib: loss_fn stands in for loss {cfg.loss!r}, which the run records (yours: register_loss)"
            )
        # rank 0 marks the run as its own from the moment it is chosen: no other process resumes or
        # overwrites it meanwhile (`.training`)
        with determinism_kept(), ExitStack() as held:
            return _fit(cfg, resume, info, loss_fn or build_loss(cfg.loss), held, on_epoch)
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:  # its traceback ends deep in torch or the data and says nothing
        stopped = TrainingInterrupted(UNSAVED)
        stopped.saved = False
        raise stopped from None
    finally:
        cleanup(info)


# Settings each process (node) may have its own of: where it computes and caches, how it reports.
PER_PROCESS = {"device", "num_workers", "progress", "cache", "cache_dir", "use_wandb", "wandb_project"}


def _check_same_settings(cfg: TrainConfig) -> None:
    """A ValueError on every rank where the processes of a distributed run were started with other
    settings (two nodes given other options or another run to resume): they trained on and wrote rank 0's
    settings (another lr or seed on one node: a run worse than either, recorded as rank 0's), or waited for
    each other until the timeout (other epochs or batch sizes)."""
    every = all_gather_object({k: v for k, v in cfg.to_dict().items() if k not in PER_PROCESS})
    differ = sorted({k for other in every[1:] for k in every[0] if other.get(k) != every[0][k]})
    if not differ:
        return
    rank = next(r for r, other in enumerate(every) if any(other.get(k) != every[0][k] for k in differ))
    shown = "; ".join(f"{k}: rank 0 {every[0][k]!r}, rank {rank} {every[rank].get(k)!r}" for k in differ[:6])
    raise ValueError(
        f"the {len(every)} processes were started with other settings ({shown}); start every node with "
        "the same command, the same data path and, to resume, the same run folder"
    )


def _check_steps(n_images: int, batch_size: int, world_size: int) -> None:
    """A ValueError where an epoch would have no training step (it read as "none of the training images
    could be read" after the first epoch)."""
    if train_steps_per_epoch(n_images, batch_size, world_size) > 0:
        return
    shares = f" shared by {world_size} processes" if world_size > 1 else ""
    raise ValueError(
        f"{n_images} training image(s){shares} in batches of {batch_size} make no training step (a last "
        "batch of one image is dropped: BatchNorm cannot train on it); train on more images (train_limit)"
        + (" or with fewer processes" if world_size > 1 else "")
    )


def _fit(
    cfg: TrainConfig,
    resume: bool | str | Path,
    info: DistInfo,
    loss_fn: LossFn,
    held: ExitStack,
    on_epoch: OnEpoch | None,
) -> FitResult:
    cfg, ckpt, run_dir = _resumed(cfg, resume, info, held)
    # Rank 0 first: it makes the synthetic set if needed, the others then find it.
    # a resumed folder run trains on its recorded split, whatever images the folder gained since
    recorded = ckpt.get("splits") if ckpt is not None else None
    train_ds, val_ds, kind = main_first(lambda: make_datasets(cfg, recorded))
    _check_steps(len(train_ds), cfg.batch_size, info.world_size)
    use_amp = default_amp(info.device) if cfg.amp is None else bool(cfg.amp)
    cfg, layout = _memory_format(cfg, ckpt, info, use_amp)
    apply_determinism(cfg.deterministic)
    seed_everything(cfg.seed)
    model, spec = _build_model(cfg, info)
    loaders, feed = _loaders(train_ds, val_ds, cfg, info)
    held.callback(stop_workers, loaders)  # also when fit raises: see stop_workers
    cfg, compiling = _compile(cfg, ckpt, info, len(loaders[0]) * cfg.epochs)
    if cfg.compile:
        held.enter_context(compile_room())
    state = _new_state(model, cfg, len(loaders[0]), use_amp)
    if ckpt is not None:
        assert run_dir is not None  # _resumed returns a checkpoint with its run's folder
        _resume(state, ckpt, info, run_dir, cfg)
    else:
        run_dir = on_main(lambda: _hold(held, new_run(cfg)))
    folder = _open_folder(run_dir, cfg, spec, kind, train_ds, info)
    if ckpt is not None and ckpt.get("config", {}).get("patience") != cfg.patience:
        folder.replan(cfg)  # config.json: the patience the run now stops by (what says whether it ended)
    clock = CompileClock(info.device) if cfg.compile else None
    hook = EpochHook(on_epoch, val_ds, info.device, info.is_main) if on_epoch is not None else None
    env = Env(info.device, use_amp, loss_fn, Interrupt(), _prep(cfg, info), clock, hook)
    described = describe_run(cfg, info, env, model, kind, train_ds, val_ds, run_dir)
    first_line = f"{described}; {layout}; {feed}; {compiling}; {optimizer_name(state.optimizer)}"
    done = _training_done(state, cfg)  # resumed when finished: what it would train on is beside the point
    if not done:
        say(info, first_line)
    if ckpt is None and (note := kept_plan_note(cfg.epochs, cfg.budget_minutes)):
        say(info, note)
    # not under a budget: it re-plans the epochs, so its first plan's last epoch means little
    if ckpt is None and cfg.budget_minutes is None and (note := dead_milestones_note(cfg)):
        say(info, note)
    where = {"epoch": state.epoch, "step": state.partial.step, "first_line": first_line, "data": kind}
    if not done:  # a finished run's record stays its own: this call trains nothing
        if ckpt is not None and info.is_main:  # what it goes on with that it did not begin with
            for note in resume_notes(run_dir, ckpt, kind, train_ds.root, state.epoch + 1):
                say(info, note)
        folder.record_start(run_environment(info.device, use_amp, info.world_size) | where)
    # `net` trains; `state.eval_model` is what is validated and saved, through `eval_net`
    net, eval_net = _nets(model, state, cfg, info)
    if not done:  # else no W&B run, nor the patience's stop said again
        tracker = WandbLogger(
            cfg.use_wandb and info.is_main, cfg.wandb_project, run_dir.name, cfg.to_dict(), run_dir
        )
        try:
            _epochs(state, (net, eval_net), loaders, folder, env, info, tracker)
        finally:
            tracker.finish()
    barrier()  # a caller on any rank may read the run folder once fit returns
    history = history_frame(state.history)
    model_out = state.eval_model.eval()
    setattr(model_out, TRAINED_SIZE, folder.cfg.image_size)  # predict() and the viewer take it
    return FitResult(
        run_dir,
        history,
        state.best_dice,
        state.best_epoch,
        model_out,
        folder.cfg,
        kind,
        train_ds.root,
        info.is_main,
    )


def _hold(held: ExitStack, marked: AbstractContextManager[Path]) -> Path:
    return held.enter_context(marked)


def _resumed(
    cfg: TrainConfig, resume: bool | str | Path, info: DistInfo, held: ExitStack
) -> tuple[TrainConfig, dict[str, Any] | None, Path | None]:
    """The run to continue (its config as the checkpoint left it, its last.pt and folder), or none."""
    ckpt, run_dir = None, None
    if resume:
        # rank 0 chooses (the ranks must agree on "the newest run") and marks it
        run_dir = on_main(lambda: _hold(held, resumed_run(cfg, resume)))
        ckpt = load_resume_checkpoint(cfg, run_dir, info.world_size)
    cfg = _device_data(cfg, ckpt)
    if ckpt is not None and cfg.budget_minutes is not None:  # the epochs it has re-planned to so far
        cfg = replace(cfg, epochs=int(_saved(ckpt, "epochs", cfg.epochs)))
    return cfg, ckpt, run_dir


def _open_folder(
    run_dir: Path,
    cfg: TrainConfig,
    spec: dict[str, Any],
    kind: str,
    train_ds: SegmentationDataset,
    info: DistInfo,
) -> RunFolder:
    """The run folder that rank 0 writes; a folder data set's split goes in it, whatever images the
    folder gains later."""
    root = str(Path(train_ds.root).resolve())
    splits = train_ds.splits if kind == "folder" else None
    folder = RunFolder(run_dir, cfg, spec, kind, info.world_size, info.is_main, root, splits)
    if splits is not None and info.is_main:
        write_splits(splits, run_dir / "splits")
    return folder


def _epochs(
    state: TrainState,
    nets: tuple[nn.Module, nn.Module],
    loaders: Loaders,
    folder: RunFolder,
    env: Env,
    info: DistInfo,
    tracker: WandbLogger,
) -> None:
    """Train and validate epoch after epoch until the run's epochs are done (a run with a budget re-plans
    them: `folder.cfg`) or Ctrl+C, which ends the epoch under way first (`deferred_sigint`)."""
    clock = env.clock
    try:
        with deferred_sigint() as interrupt:
            env = replace(env, interrupt=interrupt)
            while state.epoch < folder.cfg.epochs and not _stops_by_patience(state, folder.cfg, info):
                epoch = state.epoch + 1
                row, skipped, failed = _train_and_validate(
                    epoch, state, nets, loaders, folder.cfg, env, folder, info
                )
                tracker.log({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
                report_epoch(info, folder.cfg, row, skipped)
                if failed is not None:  # the epoch is saved and logged, without the hook's metrics
                    _hook_failed(failed, state, folder, info)
                release_idle_memory()  # a kernel training run after run keeps no freed pages without bound
                if clock is not None and clock.seconds:  # once, after this process's first epoch
                    say(info, clock.describe())
                    clock = None
    except (RuntimeError, ConnectionResetError) as e:
        error, ended = e, []
        try:  # first the worker a reset connection says is dying: torch's own report of it may come meanwhile
            ended = settled(error, loaders)
        except RuntimeError as report:  # torch's SIGCHLD handler raises wherever Python is when it runs
            error, ended = report, ended_workers(loaders)
        advice = lost_process_advice(error, loaders, folder.path, info, exit_code(ended))
        if advice is None:
            raise
        said = death_said(error, ended)
        raise RuntimeError(f"{said}. {advice}") from None


def _stops_by_patience(state: TrainState, cfg: TrainConfig, info: DistInfo) -> bool:
    """Whether `cfg.patience` epochs have gone by since the best val Dice (said once, when it stops). From
    the state alone, so a resumed run stops where the uninterrupted one did, and every rank alike."""
    p = cfg.patience
    if p is None or not patience_spent(state.epoch, state.best_epoch, p):
        return False
    say(info, f"seglib: val Dice has not bettered epoch {state.best_epoch}'s {state.best_dice:.4f} in "
              f"{epochs_said(p)} (patience {p}): stopped after epoch {state.epoch} of {cfg.epochs}")  # fmt: skip
    return True


def _memory_format(
    cfg: TrainConfig, ckpt: dict[str, Any] | None, info: DistInfo, use_amp: bool
) -> tuple[TrainConfig, str]:
    """`cfg` with channels_last decided (the run's config records it) and how it was decided.

    A resumed run keeps what it trained in; otherwise `fastpath.choose_memory_format` (rank 0 probes,
    every rank trains in its answer)."""
    if cfg.channels_last is None and ckpt is not None:
        saved = bool(ckpt["config"].get("channels_last", True))
        return replace(cfg, channels_last=saved), f"memory format {_layout(saved)} (the resumed run's)"
    choice = on_main(
        lambda: choose_memory_format(
            cfg.model,
            cfg.model_kwargs,
            cfg.image_size,
            cfg.batch_size,
            info.device,
            use_amp,
            cfg.channels_last,
        )
    )
    return replace(cfg, channels_last=choice.channels_last), choice.describe()


def _saved(ckpt: dict[str, Any], key: str, default: Any) -> Any:
    """A resumed run's own value of a setting the machine chose (older runs: `default`)."""
    return ckpt["config"].get(key, default)


def _device_data(cfg: TrainConfig, ckpt: dict[str, Any] | None) -> TrainConfig:
    """`cfg` with device_data decided (`loaders.run_device_data`; a resumed run keeps its own)."""
    if cfg.device_data is None and ckpt is not None:
        return replace(cfg, device_data=bool(_saved(ckpt, "device_data", False)))
    return replace(cfg, device_data=run_device_data(cfg))


def _compile(
    cfg: TrainConfig, ckpt: dict[str, Any] | None, info: DistInfo, total_steps: int
) -> tuple[TrainConfig, str]:
    """`cfg` with compile decided (`compiled.choose_compile`; a resumed run keeps its own) and why."""
    if cfg.compile is None and ckpt is not None:
        saved = bool(_saved(ckpt, "compile", False))
        return replace(cfg, compile=saved), f"compile {'on' if saved else 'off'} (the resumed run's)"
    on, why = choose_compile(cfg.compile, info.device, total_steps)
    return replace(cfg, compile=on), why


def _nets(
    model: nn.Module, state: TrainState, cfg: TrainConfig, info: DistInfo
) -> tuple[nn.Module, nn.Module]:
    """What trains (DDP around the model in a distributed run) and what validates (`state.eval_model`),
    each compiled when the run compiles; one compiled module serves both where they are the same."""
    net = wrap_model(model, info)
    if not cfg.compile:
        return net, state.eval_model
    train_net = compile_module(net)
    same = state.eval_model is model and net is model
    return train_net, train_net if same else compile_module(state.eval_model)


def _prep(cfg: TrainConfig, info: DistInfo) -> BatchPrep:
    """Batches to model inputs; on the device path with augmentation, `train_transform`'s recipe there."""
    augment = None
    if cfg.device_data and cfg.augment:
        augment = DeviceAugment(IGNORE_INDEX if cfg.border == "ignore" else 0, cfg.scale_jitter)
    assert cfg.channels_last is not None  # _memory_format decided it
    return BatchPrep(info.device, cfg.channels_last, augment, cfg.seed, info.rank)


def _layout(channels_last: bool) -> str:
    return "channels_last" if channels_last else "NCHW"


def _build_model(cfg: TrainConfig, info: DistInfo) -> tuple[nn.Module, dict[str, Any]]:
    model = build_model(cfg.model, **cfg.model_kwargs)
    spec = model_spec(model, cfg.model, cfg.model_kwargs)
    if cfg.sync_bn and info.distributed:
        model = convert_sync_batchnorm(model, info.device)
    assert cfg.channels_last is not None  # _memory_format decided it
    return prepare_model(model, info.device, cfg.channels_last), spec


Loader = DataLoader[dict[str, Any]] | ResidentLoader  # a training loader
EvalLoader = Loader | ThreadLoader
Loaders = tuple[Loader, EvalLoader]  # training, validation


def _loaders(
    train_ds: SegmentationDataset, val_ds: SegmentationDataset, cfg: TrainConfig, info: DistInfo
) -> tuple[Loaders, str]:
    """The train and val loaders, and the data path in words (the run's first line)."""
    workers = cfg.num_workers
    if workers is None:  # the node's cores are shared by its processes
        workers = default_num_workers(info.device, info.local_world_size)
    assert cfg.device_data is not None  # _resumed decided it (_device_data)
    # Both caches whole on the device: no workers, no per-sample work.
    resident = cfg.device_data and resident_fits(info.device, train_ds, val_ds)
    rank, world = info.rank, info.world_size
    train = train_loader(
        train_ds, cfg.batch_size, info.device, cfg.seed, cfg.shuffle, workers, rank, world, resident
    )
    val = eval_loader(val_ds, cfg.batch_size, info.device, workers, rank, world, resident)
    if resident:
        mb = (resident_bytes(train_ds) + resident_bytes(val_ds)) / 1e6
        feed = f"data path device (uint8 cache resident on {info.device}, {mb:,.0f} MB)"
    elif cfg.device_data:
        feed = f"data path device (uint8 batches from {workers} loader worker(s))"
    else:
        feed = f"data path host (Albumentations in {workers} loader worker(s))"
    return (train, val), feed


def _new_state(model: nn.Module, cfg: TrainConfig, steps_per_epoch: int, use_amp: bool) -> TrainState:
    optimizer = build_optimizer(model.parameters(), cfg.lr, cfg.weight_decay)
    device = next(model.parameters()).device
    # Loss scaling is for fp16 only; bf16 has fp32's range.
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype(device) == torch.float16)
    # With EMA, the averaged weights are the run's model: validated, saved as best.pt, returned.
    ema = ModelEMA(model, cfg.ema_decay) if cfg.ema_decay else None
    return TrainState(model, optimizer, build_scheduler(cfg, optimizer, steps_per_epoch), scaler, ema)


def _resume(state: TrainState, ckpt: dict[str, Any], info: DistInfo, run_dir: Path, cfg: TrainConfig) -> None:
    state.load_state_dict(ckpt)
    if not info.is_main:  # the saved sums are all ranks' (EpochStats.reduced): rank 0 carries them
        state.partial = EpochStats(step=state.partial.step, seconds=state.partial.seconds)
    epoch, step = state.epoch + 1, state.partial.step
    if _training_done(state, cfg):  # nothing left: its results are that run's, not this call's
        if state.epoch >= cfg.epochs:
            ended = f"has finished its {epochs_said(cfg.epochs)}"
        else:  # a larger patience lets it go on (RESUME_MAY_DIFFER)
            ended = f"stopped by its patience ({cfg.patience}) after epoch {state.epoch} of {cfg.epochs}"
        say(
            info,
            f"seglib: {run_dir} {ended}: nothing to resume (a new run: leave out resume= in Python, --resume "
            "on the command line, resume=True in a notebook)",
        )
        return
    where = f"step {step} of epoch {epoch}" if step else f"the start of epoch {epoch}"
    say(info, f"seglib: resuming {run_dir} at {where} (of {epochs_said(cfg.epochs)})")


def _train_and_validate(
    epoch: int,
    state: TrainState,
    nets: tuple[nn.Module, nn.Module],
    loaders: Loaders,
    cfg: TrainConfig,
    env: Env,
    folder: RunFolder,
    info: DistInfo,
) -> tuple[dict[str, Any], list[str], HookFailure | None]:
    """One epoch: train `nets[0]`, validate `nets[1]`, record it in `state` and the run folder; the
    history row, the samples skipped as unreadable, and what went wrong in `on_epoch` (None: nothing)."""
    train, val = loaders
    net, eval_net = nets
    sampler = train.sampler
    assert isinstance(sampler, EpochSampler)  # train_loader gives every training loader one
    steps = train_steps_per_epoch(sampler.n, cfg.batch_size, info.world_size)  # n: the training images
    t0 = time.perf_counter() - state.partial.seconds
    resumed_at = state.partial.step  # where last.pt stands in this epoch (0: its start)
    sampler.set_epoch(epoch, start=resumed_at * cfg.batch_size)
    desc = f"epoch {epoch}/{cfg.epochs}"
    size = _size_at(cfg, state.history)(epoch, cfg.epochs)
    small = f" at {size} px" if size != cfg.image_size else ""
    phase = "training"
    try:
        tr = train_one_epoch(net, state, train, cfg, env, steps, f"{desc} train{small}", size)
        # Rank 0's BatchNorm statistics everywhere: what it saves is what every rank validates.
        broadcast_buffers(state.model)
        if state.ema is not None:
            broadcast_buffers(state.ema.module)
        phase = "validation"
        va = evaluate_epoch(eval_net, val, cfg, env, f"{desc} val")
    except StopRequested:
        state.partial.seconds = time.perf_counter() - t0
        state.partial = state.partial.reduced(env.device)
        folder.save_last(state)
        barrier()  # the ranks leave together, once last.pt is complete
        raise TrainingInterrupted(
            f"training stopped in epoch {epoch} after step {state.partial.step} of {steps}; "
            f"{folder.path / 'last.pt'} holds everything up to there. Resume with "
            f"{resume_command(folder.path, info)} (its saved settings)"
        ) from None
    except NonFiniteLossError as e:
        raise NonFiniteLossError(
            f"the loss became NaN or infinite in epoch {epoch} at step {e.args[0]}; training stopped. "
            f"{_kept(folder, epoch, resumed_at)}. Lower the learning rate (lr={cfg.lr:g}), check the data, "
            "or turn amp off"
        ) from None
    except torch.OutOfMemoryError as e:
        at = size if phase == "training" else cfg.image_size
        where = f"epoch {epoch} ({phase}, batches of {cfg.batch_size} at {at} px)"
        raise _out_of_memory(
            e, f"{env.device}", where, cfg.batch_size, _kept(folder, epoch, resumed_at)
        ) from None
    tr, va = tr.reduced(env.device), va.reduced(env.device)
    for what, stats in (("training", tr), ("validation", va)):
        if not stats.n_images:  # every sample skipped as unreadable: the epoch's figures would be zeros
            raise CorruptSampleError(
                f"epoch {epoch}: none of the {what} images could be read ({len(stats.skipped)} skipped: "
                f"{'; '.join(stats.skipped[:3])}); replace the files, or point data_root at other data"
            )
    return _end_epoch(epoch, state, tr, va, t0, steps, folder, size, env)


def _kept(folder: RunFolder, epoch: int, resumed_at: int) -> str:
    """What a run that failed in `epoch` still has: its last.pt, and where that stands."""
    if not (folder.path / "last.pt").is_file():
        return "Nothing was saved yet"
    good = f"step {resumed_at} of epoch {epoch}" if resumed_at else f"end of epoch {epoch - 1}"
    return f"{folder.path / 'last.pt'} holds the last good state ({good})"


def _out_of_memory(e: torch.OutOfMemoryError, device: str, where: str, batch: int, kept: str) -> Exception:
    """The device's out-of-memory error, saying which settings decide the memory and what the run kept: torch's
    own words say how much was missing (its allocator's bookkeeping after that is left out)."""
    said = str(e).split(" Of the allocated")[0].strip()
    return torch.OutOfMemoryError(
        f"{device} ran out of memory in {where}: {said} {kept}. Start a new run with a smaller batch_size "
        f"(say {max(1, batch // 2)}) or image_size, or free the GPU (nvidia-smi lists its processes); in a "
        "notebook, restart the kernel first: it still holds this run's tensors"
    )


def _end_epoch(
    epoch: int,
    state: TrainState,
    tr: EpochStats,
    va: EpochStats,
    t0: float,
    steps: int,
    folder: RunFolder,
    size: int,
    env: Env,
) -> tuple[dict[str, Any], list[str], HookFailure | None]:
    epoch_lr = state.lr_log[-1] if state.lr_log else state.optimizer.param_groups[0]["lr"]
    if not steps_per_batch(folder.cfg.scheduler):
        with warnings.catch_warnings():  # resumed after epoch 1's last step, no optimizer step came first
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler.step\(\)` before", UserWarning)
            state.scheduler.step()
    skipped = tr.skipped + va.skipped
    row = {
        "epoch": epoch,
        "train_loss": tr.loss,
        "train_dice": tr.dice,
        "val_loss": va.loss,
        "val_dice": va.dice,
        "lr": epoch_lr,
        "seconds": time.perf_counter() - t0,
        "skipped": len(skipped),
        "train_size": size,
    }
    state.history.append(row)
    new_best = row["val_dice"] > state.best_dice
    if new_best:
        state.best_dice, state.best_epoch = row["val_dice"], epoch
    state.epoch, state.partial = epoch, EpochStats()
    _replan(state, folder, steps)  # before the saves: last.pt holds the plan a resumed run continues
    # the hook's metrics join the row before the saves; where it failed, the epoch is saved without them
    failed = (
        env.on_epoch(row, state.eval_model, folder.path, folder.cfg) if env.on_epoch is not None else None
    )
    folder.end_epoch(state, steps, new_best)
    folder.save_last(state)
    return row, skipped, failed


def _training_done(state: TrainState, cfg: TrainConfig) -> bool:
    """Whether the run has trained all its epochs, or stopped by its patience."""
    return state.epoch >= cfg.epochs or patience_spent(state.epoch, state.best_epoch, cfg.patience)


def _hook_failed(failed: HookFailure, state: TrainState, folder: RunFolder, info: DistInfo) -> None:
    """Raise what `on_epoch` did wrong in the epoch just saved (without its metrics), and how to go on:
    a Ctrl-C in it stops the run as one anywhere else does."""
    epoch, cfg, last = state.epoch, folder.cfg, folder.path / "last.pt"
    if _training_done(state, cfg):
        saved = (
            f"the run's training is done: {last} holds its last epoch, {epoch}, without the hook's metrics"
        )
    else:
        saved = (
            f"{last} holds epoch {epoch}, without the hook's metrics. Resume with "
            f"{resume_command(folder.path, info)} (in Python, pass on_epoch again for the epochs left)"
        )
    if failed.kind == "interrupted":
        raise TrainingInterrupted(
            f"training stopped in the on_epoch hook after epoch {epoch}; {saved}"
        ) from None
    rank = f"rank {failed.rank}'s " if info.distributed else ""
    if failed.kind == "refused":
        raise ValueError(f"{rank}on_epoch, after epoch {epoch}, {failed.said}; {saved}") from None
    raise EpochHookError(
        f"{rank}on_epoch raised after epoch {epoch} ({failed.said}); {saved}"
    ) from failed.error


def _replan(state: TrainState, folder: RunFolder, steps: int) -> None:
    """Under `budget_minutes`, the run's epochs re-planned from its own epochs' times (`budget.next_plan`;
    rank 0's times decide for every rank), and its lr schedule re-made for them."""
    cfg = folder.cfg
    if cfg.budget_minutes is None:
        return
    seconds = [row["seconds"] for row in state.history]
    budget = cfg.budget_minutes * 60
    sizes, size_at = None, None
    if cfg.progressive_sizes:  # each size at its own pace
        sizes = [row.get("train_size") or cfg.image_size for row in state.history]
        size_at = _size_at(cfg, state.history)
    epochs = on_main(lambda: next_plan(seconds, budget, cfg.epochs, sizes, size_at))
    if epochs == cfg.epochs:
        return
    folder.replan(replace(cfg, epochs=epochs))
    state.scheduler = rescheduled(folder.cfg, state.optimizer, steps, state.step, state.epoch)
    if is_main():
        print(
            f"seglib: budget {cfg.budget_minutes:g} min: {len(seconds)} epochs took {sum(seconds) / 60:.2f} min, "
            f"the last {seconds[-1]:.1f} s; re-planned {cfg.epochs} -> {epochs_said(epochs)}"
        )


def _size_at(cfg: TrainConfig, history: list[dict[str, Any]]) -> SizeAt:
    """The size an epoch trains at under a plan of so many epochs (`progressive.epoch_size`), never below
    the size of the run's last epoch."""
    reached = (history[-1].get("train_size") or 0) if history else 0
    sizes, share = cfg.progressive_sizes, cfg.progressive_share
    return lambda epoch, epochs: epoch_size(sizes, share, cfg.image_size, epoch, epochs, reached)

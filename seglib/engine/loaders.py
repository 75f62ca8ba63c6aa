"""The data side of a run: its datasets, and the DataLoader recipe that training, validation and
evaluation share."""

from __future__ import annotations

import dataclasses
import math
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..data import (
    EpochSampler,
    SegmentationDataset,
    collate,
    eval_transform,
    open_split,
    own_train_transform,
    resolve_data_root,
    train_transform,
    uint8_transform,
)
from ..metrics import IGNORE_INDEX
from .batches import ResidentLoader, resolve_device_data
from .checkpoint import load_checkpoint
from .config import CHOICES, OWN_CHOICES, TrainConfig
from .runtime import default_num_workers, resolve_device
from .spawning import check_workers_can_load
from .threadloader import ThreadLoader

__all__ = [
    "FOLDER_SETTINGS",
    "OWN_AUGMENTATIONS",
    "make_datasets",
    "run_device_data",
    "split_dataset",
    "checkpoint_split",
    "make_loader",
    "train_loader",
    "eval_loader",
    "train_steps_per_epoch",
]

# The settings that say how a folder data set reads (its masks, its seeded split).
FOLDER_SETTINGS = ("mask_values", "val_fraction", "test_fraction", "split_seed")
# A user's training augmentations by name (`register_augmentation`): name -> build(image_size, mask_fill)
OWN_AUGMENTATIONS: dict[str, Callable[[int, int], Any]] = {}


def split_dataset(
    cfg: TrainConfig, split: str, transform: Callable[..., dict[str, Any]] | None = None, **kwargs: Any
) -> SegmentationDataset:
    """The `split` of the run's data (its dataset, root, border and folder settings); `kwargs` go to the
    dataset (image_size, limit, return_full_mask, ...). What evaluates a run's checkpoint uses too."""
    root, kind = resolve_data_root(cfg.data_root, cfg.dataset, cfg.synthetic_root)
    folder = {k: getattr(cfg, k) for k in FOLDER_SETTINGS}
    kwargs = {"border": cfg.border, "on_corrupt": cfg.on_corrupt, "image_size": cfg.image_size, **kwargs}
    return open_split(root, kind, split, transform, **folder, **kwargs)


def checkpoint_split(
    checkpoint: str | Path | dict[str, Any],
    split: str,
    data_root: str | Path | None = None,
    dataset: str | None = None,
    **kwargs: Any,
) -> SegmentationDataset:
    """The `split` of the data a checkpoint (its file, or the loaded checkpoint) was trained on, read as its
    run read it (border, a folder's mask_values and the split the run recorded, whatever images the folder
    gained since); `data_root` and `dataset` point elsewhere when given (`dataset` None there: "auto" on
    `data_root`); another folder than the run's is read with the run's split where it holds all of its
    images, else with its own (a warning says so)."""
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    saved = ckpt.get("config", {})
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}  # of every setting
    if data_root is None and dataset is None:
        over = _run_data(ckpt)
    else:
        over = {"data_root": str(data_root or saved.get("data_root")), "dataset": dataset or "auto"}
    settings = {k: v for k, v in saved.items() if k in defaults}
    # a model, loss, scheduler or augmentation of the user's own has no part in reading a split: a process
    # (the command line) that has not registered it still reads the run's split
    for name in OWN_CHOICES:
        if settings.get(name, defaults[name]) not in CHOICES[name]:
            settings |= {name: defaults[name]} | ({"model_kwargs": {}} if name == "model" else {})
    cfg = TrainConfig(**{**settings, **over})
    same = (
        data_root is None
        or Path(data_root).resolve() == Path(ckpt.get("data_root") or "/nonexistent").resolve()
    )
    # another folder (moved, copied): the run's split where it holds all of its images, else its own split
    return split_dataset(cfg, split, recorded=ckpt.get("splits"), recorded_strict=same, **kwargs)


def _run_data(ckpt: dict[str, Any]) -> dict[str, str]:
    """The data the checkpoint's run trained on: its folder and kind as the run resolved them, never
    "auto" (which would score a synthetic set where the folder is missing). Checkpoints before the
    absolute folder was saved give their config's path, relative to where the run was started."""
    saved, kind = ckpt.get("config", {}), ckpt.get("data")
    if kind is None:  # older still: the config as it was
        return {}
    root = ckpt.get("data_root") or saved.get("synthetic_root" if kind == "synthetic" else "data_root", "")
    if not Path(root).exists():
        raise FileNotFoundError(
            f"the checkpoint's run trained on {kind} data at {root!r}, which is not there from "
            f"{Path.cwd()}; pass --data_path (data_root=) with the data's folder"
        )
    return {"data_root": root, "synthetic_root": root, "dataset": kind}


def run_device_data(cfg: TrainConfig) -> bool:
    """Whether the run takes the device data path (`batches.resolve_device_data` on its device). Not by
    default for an augmentation of the user's own: it runs on the host, in the loader."""
    if cfg.device_data is None and cfg.augment and cfg.augmentation != "default":
        return False
    return resolve_device_data(cfg.device_data, resolve_device(cfg.device))


def make_datasets(
    cfg: TrainConfig, recorded: dict[str, list[str]] | None = None
) -> tuple[SegmentationDataset, SegmentationDataset, str]:
    """The run's train and val datasets, and which data they are ("oxford-pet" | "synthetic" | "folder").
    `recorded`: a resumed folder run's split, from its checkpoint.

    On the device data path both give uint8 samples (the device normalises and augments them)."""
    _, kind = resolve_data_root(cfg.data_root, cfg.dataset, cfg.synthetic_root)
    fill = IGNORE_INDEX if cfg.border == "ignore" else 0
    if run_device_data(cfg):
        train_tf, val_tf = uint8_transform(cfg.image_size), uint8_transform(cfg.image_size)
    elif cfg.augment:
        train_tf = _train_transform(cfg, fill)
        val_tf = eval_transform(cfg.image_size)
    else:
        train_tf, val_tf = eval_transform(cfg.image_size), eval_transform(cfg.image_size)
    train = split_dataset(cfg, "train", train_tf, limit=cfg.train_limit, recorded=recorded)
    val = split_dataset(cfg, "val", val_tf, limit=cfg.val_limit, recorded=recorded)
    if cfg.cache:  # decode once; the samples are bit-identical to uncached ones
        cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.output_dir).parent / "cache"
        train.use_cache(cache_dir, cfg.image_size)
        val.use_cache(cache_dir, cfg.image_size)
    return train, val, kind


def _train_transform(cfg: TrainConfig, fill: int) -> Callable[..., dict[str, Any]]:
    """seglib's training augmentation, or the user's registered one between the resize and the normalising."""
    if cfg.augmentation == "default":
        return train_transform(cfg.image_size, mask_fill=fill, scale_jitter=cfg.scale_jitter)
    augmentation = OWN_AUGMENTATIONS[cfg.augmentation](cfg.image_size, fill)
    try:
        return own_train_transform(augmentation, cfg.image_size, fill, cfg.scale_jitter, cfg.augmentation)
    except (TypeError, ValueError) as e:
        raise type(e)(f"augmentation {cfg.augmentation!r} (register_augmentation): {e}") from None


def train_steps_per_epoch(n_images: int, batch_size: int, world_size: int = 1) -> int:
    """Optimizer steps in one training epoch of `n_images` (per rank, which is also the global count).

    Each rank takes ceil(n / world_size) images (the shares are padded); a last batch of a single image
    is dropped, because BatchNorm cannot train on it (1x1 maps at the bottom of the encoder).
    """
    share = math.ceil(n_images / world_size)
    return share // batch_size if share % batch_size == 1 else math.ceil(share / batch_size)


# Set by the command line's train, which stops at SIGTERM as at Ctrl-C (cli/commands.py). Not elsewhere: in
# a kernel, DataLoader's shutdown ends a worker that does not stop with SIGTERM, and the kernel lives on.
WORKERS_LEAVE_SIGTERM = False


def leave_sigterm_to_the_main_process(worker_id: int) -> None:
    """A loader worker's start: ignore SIGTERM. A batch scheduler (SLURM's time limit, scancel) sends it to
    every process of the job: the workers died at once, and the main process, which stops at the next step
    with last.pt saved, failed instead on "DataLoader worker ... is killed by signal: Terminated" (said
    as a want of memory). The main process ends its workers itself; killed, it leaves them to torch's
    watchdog, which ends a worker whose parent is gone."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(
    dataset: Dataset[dict[str, Any]],
    batch_size: int,
    sampler: Iterable[int | tuple[int, int]],  # a Sampler's keys: indices, or EpochSampler's (index, seed)
    device: torch.device,
    num_workers: int | None = None,
    drop_last: bool = False,
) -> DataLoader[dict[str, Any]]:
    """A DataLoader with seglib's collate, pinned memory on CUDA and persistent, prefetching workers.

    `num_workers=None` takes `default_num_workers(device)` (a distributed run passes its node's share).
    Workers persist across epochs: the sampler, not the workers' state, decides each epoch's data.
    Where they start by spawn, what they cannot load is refused here (`check_workers_can_load`).
    """
    workers = default_num_workers(device) if num_workers is None else num_workers
    check_workers_can_load(dataset, workers)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        collate_fn=collate,
        drop_last=drop_last,
        # Its own generator for the one number each iterator draws (the workers' base seed; seglib seeds
        # every sample itself). Drawn from torch's global generator, which dropout uses, it shifted the
        # masks with the number of workers and on resume: a resumed run differed from an uninterrupted one.
        generator=torch.Generator().manual_seed(0),
        worker_init_fn=leave_sigterm_to_the_main_process if workers and WORKERS_LEAVE_SIGTERM else None,
    )


def train_loader(
    dataset: SegmentationDataset,
    batch_size: int,
    device: torch.device,
    seed: int,
    shuffle: bool = True,
    num_workers: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    resident: bool = False,
) -> DataLoader[dict[str, Any]] | ResidentLoader:
    """This rank's training loader: an `EpochSampler` share padded to equal length, so the ranks step
    together; a last batch of one image dropped (see `train_steps_per_epoch`). `resident`: batches
    gathered from the dataset's cache held on `device` (`batches.ResidentLoader`), no workers."""
    sampler = EpochSampler(
        len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, pad=True
    )
    drop_last = sampler.num_samples % batch_size == 1
    if resident:
        return ResidentLoader(dataset, batch_size, sampler, device, drop_last)
    return make_loader(dataset, batch_size, sampler, device, num_workers, drop_last)


def eval_loader(
    dataset: SegmentationDataset,
    batch_size: int,
    device: torch.device,
    num_workers: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    resident: bool = False,
    read_threads: int = 0,
) -> DataLoader[dict[str, Any]] | ResidentLoader | ThreadLoader:
    """This rank's evaluation loader: images rank, rank + W, ... in order, none padded or repeated, so
    that sums over the ranks count every image once (`resident` as for `train_loader`). Without worker
    processes, `read_threads` threads read the samples (`ThreadLoader`)."""
    sampler = EpochSampler(len(dataset), shuffle=False, rank=rank, world_size=world_size, pad=False)
    if resident:
        return ResidentLoader(dataset, batch_size, sampler, device)
    if num_workers == 0 and read_threads > 0:
        on_gpu = device.type == "cuda"  # the CPU's cores only read: one torch thread (ThreadLoader)
        return ThreadLoader(dataset, batch_size, sampler, read_threads, on_gpu, 1 if on_gpu else None)
    return make_loader(dataset, batch_size, sampler, device, num_workers)

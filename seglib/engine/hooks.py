"""`fit(cfg, on_epoch=...)`: code of the user's own at the end of every epoch, and the metrics it returns
in the run's history (history.csv, last.pt, the `FitResult`, W&B).

The hook is code, not a setting: config.json does not record it, and a resumed run hooks the epochs it
trains only when given it again (a resume without it: NaN in its columns for the epochs it trains).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import SegmentationDataset
from .config import TrainConfig
from .distributed import all_gather_object, get_rank
from .runs import HISTORY_COLUMNS
from .runtime import rng_state, set_rng_state

__all__ = ["EpochEnd", "EpochHook", "EpochHookError", "HookFailure", "OnEpoch", "checked_metrics"]


@dataclass(frozen=True)
class EpochEnd:
    """What `fit`'s `on_epoch` hook is given after each epoch's validation, before the epoch is saved.

    `model` is the network validation used (the EMA average where `ema_decay` is set), in eval mode, on
    `device`: read it, never change it (its mode, weights, device or memory format): the run goes on
    from it and saves it. `row` is a copy of the epoch's history row; `cfg` the run's config as it goes
    on (its epochs re-planned under a budget); `val_dataset` the run's validation images (score it with
    `seglib.engine.evaluate(end.model, end.val_dataset, end.device, progress=False)`).

    Under torchrun every process calls the hook, each with the same model; the metrics recorded are
    rank 0's. A hook that writes files writes them where `is_main` (rank 0, and any single process).
    """

    epoch: int
    row: dict[str, Any]
    model: nn.Module
    run_dir: Path
    cfg: TrainConfig
    val_dataset: SegmentationDataset
    device: torch.device
    is_main: bool = True


OnEpoch = Callable[[EpochEnd], Mapping[str, Any] | None]


class EpochHookError(RuntimeError):
    """`fit`'s `on_epoch` hook raised (its error is the `__cause__`); the epoch was saved without its
    metrics, and the message says how to resume."""


@dataclass(frozen=True)
class HookFailure:
    """What went wrong in an epoch's hook, on this rank (`error`) or on the first rank it went wrong on."""

    error: BaseException | None  # this rank's own: raised by the hook, or its return refused (ValueError)
    kind: str  # "raised" | "refused" | "interrupted" (a KeyboardInterrupt)
    said: str  # what went wrong, in words
    rank: int


def checked_metrics(returned: Any) -> dict[str, float]:
    """The hook's return as {name: float}; a ValueError naming what a history cannot hold (its message
    goes on from "on_epoch ...")."""
    if returned is None:
        return {}
    if not isinstance(returned, Mapping):
        raise ValueError(f"returned a {type(returned).__name__}; return None or a dict {{name: number}}")
    metrics = {}
    for key, value in returned.items():
        if not isinstance(key, str) or not key.strip():
            raise ValueError(
                f"returned the metric name {key!r} ({type(key).__name__}); name each metric "
                "with a non-empty string, e.g. 'val_iou'"
            )
        if key in HISTORY_COLUMNS:
            raise ValueError(
                f"returned {key!r}, a column the history has already ({', '.join(HISTORY_COLUMNS)}); "
                f"give your metric another name, e.g. 'my_{key}'"
            )
        metrics[key] = _number(key, value)
    return metrics


def _number(key: str, value: Any) -> float:
    """`value` as a float: a real number (int, float, NumPy's) or a tensor of one; not a bool."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_complex:
        if value.dtype != torch.bool:
            return float(value.item())
    elif isinstance(value, Real) and not isinstance(value, bool):  # NumPy's bool is no Real
        return float(value)
    shown = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else repr(value)
    raise ValueError(
        f"returned {key!r}: {shown} ({type(value).__name__}); each metric must be one real "
        "number (int, float or a tensor of one element; not a bool): e.g. float(iou)"
    )


@dataclass(frozen=True)
class EpochHook:
    """`fit`'s `on_epoch` with what it is given besides the epoch's own: the run's validation set, the
    device, and whether this process writes."""

    fn: OnEpoch
    val_dataset: SegmentationDataset
    device: torch.device
    is_main: bool

    def __call__(
        self, row: dict[str, Any], model: nn.Module, run_dir: Path, cfg: TrainConfig
    ) -> HookFailure | None:
        """Call the hook for the epoch of `row` and add its metrics (rank 0's, on every rank) to `row`;
        what went wrong on any rank, else None. The hook draws from the random generators without changing
        what the run draws after it."""
        epoch, own = int(row["epoch"]), copy.deepcopy(cfg)  # a hook that changes its copies changes no run
        end = EpochEnd(epoch, dict(row), model, run_dir, own, self.val_dataset, self.device, self.is_main)
        drawn = rng_state()
        try:
            metrics, error, kind = self._called(end)
        finally:
            set_rng_state(drawn)
        said = "" if error is None else f"{type(error).__name__}: {error}" if kind == "raised" else str(error)
        every = all_gather_object((metrics, kind, said))  # every rank learns where it went wrong
        failed = [(rank, k, s) for rank, (_, k, s) in enumerate(every) if k]
        if error is not None:
            return HookFailure(error, kind, said, get_rank())
        if failed:  # another rank's
            rank, kind, said = failed[0]
            return HookFailure(None, kind, said, rank)
        row.update(every[0][0])
        return None

    def _called(self, end: EpochEnd) -> tuple[dict[str, float], BaseException | None, str]:
        """The hook's metrics, or what it raised (a Ctrl-C too) or returned wrong, and which of those."""
        try:
            returned = self.fn(end)
        except (Exception, KeyboardInterrupt) as e:
            return {}, e, "interrupted" if isinstance(e, KeyboardInterrupt) else "raised"
        try:
            return checked_metrics(returned), None, ""
        except ValueError as e:
            return {}, e, "refused"

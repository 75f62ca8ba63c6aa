"""The training and evaluation engine: config, fit, evaluate, predict, checkpoints, schedulers.

It uses `seglib.models`, `seglib.data` and `seglib.metrics`, and never imports a face (plots, CLI,
workbook runner).
"""

from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from .config import PROFILES, RECIPES, SCHEDULERS, TrainConfig, config_from_profile
from .ema import ModelEMA
from .evaluate import checkpoint_image_size, evaluate, predict, predict_logits, summarize
from .io import atomic_torch_save, atomic_write_csv, atomic_write_text
from .runs import latest_run, load_history
from .schedulers import build_scheduler, lr_curve, steps_per_batch
from .train import HISTORY_COLUMNS, FitResult, fit, make_datasets

__all__ = [
    "HISTORY_COLUMNS",
    "PROFILES",
    "RECIPES",
    "SCHEDULERS",
    "ModelEMA",
    "CheckpointError",
    "FitResult",
    "TrainConfig",
    "atomic_torch_save",
    "atomic_write_csv",
    "atomic_write_text",
    "build_scheduler",
    "checkpoint_image_size",
    "config_from_profile",
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_model",
    "latest_run",
    "load_history",
    "lr_curve",
    "make_datasets",
    "predict",
    "predict_logits",
    "save_checkpoint",
    "steps_per_batch",
    "summarize",
]

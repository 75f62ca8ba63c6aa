"""The training and evaluation engine: config and presets, state, loop, evaluate, predict (and the files
predictions write), export, checkpoints, schedulers, distributed.

It uses `seglib.models`, `seglib.data` and `seglib.metrics`, and never imports a face (plots, CLI,
workbook runner, studies). docs/design.md maps its modules.
"""

from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from .config import CHOICES, SCHEDULERS, TrainConfig, number_list
from .ema import ModelEMA
from .evaluate import (
    checkpoint_image_size,
    checkpoint_threshold,
    evaluate,
    model_image_size,
    predict,
    predict_logits,
    scored_indices,
    summarize,
    worst_indices,
)
from .export import EXPORT_FORMATS, OnnxModel, check_export, export_model, load_exported
from .extend import register_augmentation, register_loss, register_model, register_scheduler
from .hooks import EpochEnd, EpochHookError
from .intervals import Difference, mean_interval, paired_difference
from .io import atomic_torch_save, atomic_write_csv, atomic_write_text
from .loaders import checkpoint_split, make_datasets, split_dataset, train_steps_per_epoch
from .loop import NonFiniteLossError, evaluate_epoch, train_one_epoch
from .losses import LOSSES, build_loss
from .predictions import Prediction, predict_dataset, predict_files, predict_image, save_prediction
from .presets import PRESETS, PROFILES, RECIPES, config_from_profile, with_recipe
from .runs import HISTORY_COLUMNS, find_resume_dir, latest_run, load_history
from .schedulers import build_scheduler, lr_curve, steps_per_batch
from .state import EpochStats, TrainState
from .train import FitResult, TrainingInterrupted, fit
from .tta import TTA, tta_label

__all__ = [
    "CHOICES",
    "EXPORT_FORMATS",
    "HISTORY_COLUMNS",
    "LOSSES",
    "PRESETS",
    "PROFILES",
    "RECIPES",
    "SCHEDULERS",
    "TTA",
    "CheckpointError",
    "Difference",
    "EpochEnd",
    "EpochHookError",
    "EpochStats",
    "FitResult",
    "ModelEMA",
    "NonFiniteLossError",
    "OnnxModel",
    "Prediction",
    "TrainConfig",
    "number_list",
    "TrainState",
    "TrainingInterrupted",
    "atomic_torch_save",
    "register_loss",
    "register_model",
    "register_scheduler",
    "register_augmentation",
    "atomic_write_csv",
    "atomic_write_text",
    "build_loss",
    "build_scheduler",
    "check_export",
    "checkpoint_split",
    "checkpoint_image_size",
    "checkpoint_threshold",
    "config_from_profile",
    "evaluate",
    "evaluate_epoch",
    "export_model",
    "fit",
    "find_resume_dir",
    "latest_run",
    "load_checkpoint",
    "load_exported",
    "load_history",
    "load_model",
    "lr_curve",
    "make_datasets",
    "mean_interval",
    "model_image_size",
    "paired_difference",
    "predict",
    "predict_dataset",
    "predict_files",
    "predict_image",
    "predict_logits",
    "save_checkpoint",
    "save_prediction",
    "split_dataset",
    "steps_per_batch",
    "scored_indices",
    "summarize",
    "worst_indices",
    "train_one_epoch",
    "train_steps_per_epoch",
    "tta_label",
    "with_recipe",
]

"""Notebook 06's runs on disk: each trained (or found finished), scored, and its curve kept in its folder.

A run's scored curve is written to `<run>/dice_vs_minutes.csv` (and its models' Dice per image to
`<run>/image_dice.csv`) before its epoch models are removed, so that
a study stopped part-way (a failure, Ctrl-C) loses no finished run. A rerun finds the runs of the same
config (`same_config`) and uses them instead of training again: its curve where it was scored on as many
test images, else its kept epoch models, scored now. A folder of the same name with another config is
never replaced: the new run gets a folder of its own (a suffix -2, -3, ...).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ..data import OxfordPetDataset, auto_kind
from ..engine import TrainConfig, atomic_write_csv, fit, load_history
from ..engine.environment import samples_changed
from ..engine.runs import CHOSEN_BY_MACHINE, RESUME_MAY_DIFFER, run_ended
from .curves import epoch_column, score_kept_models

__all__ = [
    "CURVE_FILE",
    "IMAGE_DICE_FILE",
    "StudyRun",
    "is_finished",
    "matching_runs",
    "run_recipe_job",
    "same_config",
]

CURVE_FILE = "dice_vs_minutes.csv"  # a run's scored curve, in its folder (a `test_images` column: how many)
IMAGE_DICE_FILE = "image_dice.csv"  # its kept models' Dice per test image (`score_kept_models`)
# Settings that do not change what a run computes (where it is written, how it reports): those a resume
# may change, but for the data, the device and the models kept (the curve is read from those)
UNCOMPARED = RESUME_MAY_DIFFER - {"data_root", "synthetic_root", "device", "checkpoint_every"}


@dataclass
class StudyRun:
    """One run of notebook 06, trained and scored (now or before)."""

    label: str  # the recipe item
    budget: float | None  # its budget (None: one run, read along its kept models)
    run_dir: Path
    config: TrainConfig  # as trained: its config.json (epochs re-planned, the machine's choices)
    history: pd.DataFrame  # its history.csv
    curve: pd.DataFrame  # its kept models scored (`dice_versus_minutes`), as <run_dir>/dice_vs_minutes.csv
    reused: bool = False  # found finished with the same config: not trained again
    # its kept models' Dice per test image (`score_kept_models`); None for a run scored before seglib kept it
    image_dice: pd.DataFrame | None = None


def same_config(cfg: TrainConfig, run_dir: str | Path) -> bool:
    """Whether the run in `run_dir` was trained with `cfg`: every setting that changes what is computed
    alike, the epochs of a run that re-plans them under a budget and the choices `cfg` leaves to the
    machine (None) aside, on the samples today's seglib gives. False where it holds no readable config.json."""
    return _same_settings(cfg, Path(run_dir)) and _on_todays_samples(Path(run_dir), cfg)


def _same_settings(cfg: TrainConfig, run_dir: Path) -> bool:
    try:
        saved = TrainConfig.load(run_dir / "config.json").to_dict()
    except (OSError, ValueError, TypeError):
        return False
    planned = cfg.to_dict()
    saved, planned = (json.loads(json.dumps(d)) for d in (saved, planned))  # tuples and lists alike
    for key, value in planned.items():
        if key in UNCOMPARED or (key in CHOSEN_BY_MACHINE and value is None):
            continue
        if key == "epochs" and planned.get("budget_minutes") is not None:
            continue  # planned from a timing that varies; the run re-plans them anyway
        if (
            key == "checkpoint_every"
            and planned.get("budget_minutes") is not None
            and value == planned["epochs"]
        ):
            continue  # a shorter budget's run keeps its last model only: "every" is its epochs, timed alike
        if saved.get(key) != value:
            return False
    return True


def _on_todays_samples(run_dir: Path, cfg: TrainConfig) -> bool:
    """Whether the run trained on the samples today's seglib gives (`samples_changed`): one begun before
    they changed computed something else. An "auto" run whose starts did not record the kind it took (those
    before 2026-12-07) counts as of the kind "auto" takes at `cfg.data_root` today."""
    kind, assumed = (None, auto_kind(cfg.data_root)) if cfg.dataset == "auto" else (cfg.dataset, None)
    try:
        return not samples_changed(run_dir, kind, assumed)
    except ValueError:  # its environment.json unreadable: what it trained on is unknown
        return False


def matching_runs(cfg: TrainConfig) -> list[Path]:
    """The run folders of `cfg.run_name` (or -2, -3, ...) in `cfg.output_dir` trained with `cfg`."""
    return [p for p in _named_runs(cfg) if same_config(cfg, p)]


def _named_runs(cfg: TrainConfig) -> list[Path]:
    """The run folders of `cfg.run_name` (or -2, -3, ...) in `cfg.output_dir`, shortest name first."""
    base, name = Path(cfg.output_dir), cfg.run_name
    if not name or not base.is_dir():
        return []
    found = [
        p
        for p in base.glob(f"{name}*")
        if p.name == name or (p.name.startswith(f"{name}-") and p.name[len(name) + 1 :].isdigit())
    ]
    return sorted(found, key=lambda p: (len(p.name), p.name))


def _older_samples_note(cfg: TrainConfig) -> str | None:
    """Why a run of `cfg` trained before is not reused where it began on an older seglib's samples."""
    for run_dir in _named_runs(cfg):
        if _same_settings(cfg, run_dir) and not _on_todays_samples(run_dir, cfg):
            return (
                f"{run_dir.name}: trained before with this config, on the samples of an older seglib (see "
                "seglib/data/revisions.py): not reused; training anew in a folder of its own"
            )
    return None


def is_finished(run_dir: Path) -> bool:
    """Its training ended: history.csv has the epochs its config.json (re-planned) says, or its patience
    stopped it."""
    try:
        history, saved = load_history(run_dir)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return False
    return run_ended(history, saved)


def _saved_curve(run_dir: Path, test_images: int) -> pd.DataFrame | None:
    """The run's saved curve, where it was scored on `test_images` images."""
    path = run_dir / CURVE_FILE
    if not path.is_file():
        return None
    curve = pd.read_csv(path)
    if "test_images" not in curve or curve.empty or (curve.test_images != test_images).any():
        return None
    return curve


def _saved_image_dice(run_dir: Path, curve: pd.DataFrame) -> pd.DataFrame | None:
    """The run's saved Dice per image, where it holds every model of `curve`."""
    path = run_dir / IMAGE_DICE_FILE
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    wanted = {"name", *(epoch_column(e) for e in curve.epoch)}
    return table if wanted <= set(table.columns) and len(table) == curve.test_images.iloc[0] else None


def _has_epoch_models(run_dir: Path) -> bool:
    return any((run_dir / "epochs").glob("epoch_*.pt"))


def run_recipe_job(
    label: str,
    budget: float | None,
    cfg: TrainConfig,
    test_split: Callable[[int], OxfordPetDataset],
    device: str = "auto",
    keep_epoch_models: bool = False,
    progress: bool = True,
) -> StudyRun:
    """One job of `plan_recipe_study`: trained (`fit`) and its kept models scored on `test_split(image_size)`
    (`dice_versus_minutes`); the curve written to `<run>/dice_vs_minutes.csv` before the epoch models are
    removed (kept with `keep_epoch_models`).

    A finished run of the same config (`matching_runs`) is used instead of training again, and says so: its
    saved curve where it was scored on as many test images, else its epoch models, scored now. A run of the
    same config not finished (stopped while training) is trained again in its folder; a folder of the same
    name with another config is kept, and the run gets a new one (-2, -3, ...).
    """
    test = test_split(cfg.image_size)
    curve, found, run_dir = None, None, None
    for candidate in matching_runs(cfg):
        if is_finished(candidate):
            curve = _saved_curve(candidate, len(test))
            if curve is not None or _has_epoch_models(candidate):
                run_dir = candidate
                break
        found = found or candidate  # the same config, but not finished, or scored otherwise and emptied
    reused = run_dir is not None
    if run_dir is not None:
        history, config = load_history(run_dir)
        what = "its scored curve" if curve is not None else "its kept models, scored now"
        print(f"{run_dir.name}: trained before with this config; using {what} (delete the folder to retrain)")
    else:
        if found is None and (note := _older_samples_note(cfg)):
            print(note)
        # the same config, unfinished: trained again in its folder; else a folder of its own
        target = replace(cfg, run_name=found.name, overwrite=True) if found else replace(cfg, overwrite=False)
        result = fit(target)
        run_dir, history, config = result.run_dir, result.history, result.config
    images = None if curve is None else _saved_image_dice(run_dir, curve)
    if curve is None:
        curve, images = score_kept_models(run_dir, test, device=device, progress=progress)
        curve["test_images"] = len(test)
        atomic_write_csv(images, run_dir / IMAGE_DICE_FILE)  # both on disk before the models they
        atomic_write_csv(curve, run_dir / CURVE_FILE)  # were read from go, the curve last: it marks them done
    if not keep_epoch_models:
        shutil.rmtree(run_dir / "epochs", ignore_errors=True)
    return StudyRun(label, budget, Path(run_dir), config, history, curve, reused, images)

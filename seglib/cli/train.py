"""`python -m seglib train`: the config it runs (profile, recipe, a run's saved settings, the options given)
and the run."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..data import holds_data_set
from ..engine import TrainConfig, config_from_profile, find_resume_dir, fit
from ..plots import plot_history, save_figure
from .options import NOT_OPTIONS


def train_config(a: argparse.Namespace) -> TrainConfig:
    """The config `train` runs: the profile (and recipe), then the options given, and only those.
    Resuming without --profile or --recipe: the run's saved config.json, then the options given (so that
    `train --resume RUN_DIR` alone goes on as the run was started)."""
    return _train_setup(a)[0]


def _train_setup(a: argparse.Namespace) -> tuple[TrainConfig, bool | str | Path]:
    """`train_config` and what fit resumes: --resume as given, or the run folder whose settings it took."""
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in NOT_OPTIONS]
    over = {name: getattr(a, name) for name in names if getattr(a, name) is not None}
    given_data_exists(over.get("data_root"), over.get("dataset"))
    if a.base_channels is not None:  # as before: the UNet's kwargs are these, not the profile's plus these
        over["model_kwargs"] = {**over.get("model_kwargs", {}), "base_channels": a.base_channels}
    if a.resume_or_start and (a.resume is not False or a.config is not None or a.run_name is None):
        sys.exit(
            "--resume_or_start takes --run_name (the run a requeued job goes on with): leave out --resume and --config"
        )
    if a.config is not None:
        if a.resume is not False or a.profile is not None or a.recipe is not None:
            sys.exit("--config takes a run's settings whole: leave out --resume, --profile and --recipe")
        saved = _saved_settings(a.config)
        # never the run it copies: a saved overwrite=True would remove it (unless --overwrite says so)
        here = _paths_from_where_it_ran(saved, _config_file(a.config).parent)
        return TrainConfig.from_dict({**saved, "overwrite": False, **here, **over}), False
    cfg = config_from_profile(a.profile or "full", recipe=a.recipe, **over)
    resume = _resumable(cfg, a) if a.resume_or_start else a.resume
    if resume is False or a.profile is not None or a.recipe is not None:
        return cfg, resume
    # Looked up once: fit resumes this folder (with the saved run_name and output_dir it could find another,
    # a copy of the run, or none in a moved project).
    # Under torchrun rank 0 decides which run and whether another process trains it (fit): a mark its
    # machine left, dead, reads as live on another node, whose ranks would refuse alone and say nothing.
    run = find_resume_dir(cfg, resume, marks=os.environ.get("RANK", "0") == "0")
    if not (run / "config.json").is_file():
        return cfg, run
    saved = _saved_settings(run)  # its relative paths, as --config takes them: from where it was started
    here = _paths_from_where_it_ran(saved, Path(os.path.abspath(run)))
    return TrainConfig.from_dict({**saved, **here, **over}), run


def _resumable(cfg: TrainConfig, a: argparse.Namespace) -> Path | bool:
    """--resume_or_start: the run folder to resume (the newest called `cfg.run_name`, NAME-2, ...), or False:
    no such run, or the newest stopped before its first save (an older one's last.pt is not looked for), so
    a new run starts.
    Another process training it now is refused, as with --resume. A batch scheduler that requeues a job
    runs its command again: before, a run already there made it start anew in NAME-2."""
    try:
        return find_resume_dir(cfg, True, marks=os.environ.get("RANK", "0") == "0")
    except FileNotFoundError:
        return False


def _saved_settings(path: str | Path) -> dict[str, Any]:
    """A run's config.json (`path`: the file or its run folder) as settings; those TrainConfig no longer
    has are left out. Exits naming the file where there is none or it cannot be read."""
    file = _config_file(path)
    try:
        saved = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"--config {path}: cannot read {file} ({e}); give a run folder of results/runs/")
    if not isinstance(saved, dict):
        sys.exit(f"--config {path}: {file} holds no settings; give a run folder of results/runs/")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in saved.items() if k in known}


RUN_PATHS = ("data_root", "synthetic_root", "cache_dir")  # taken from where the run was started


def _paths_from_where_it_ran(saved: dict[str, Any], run_dir: Path) -> dict[str, str]:
    """A run's relative paths made absolute, from the folder it was started in: the one its folder
    `run_dir` lies in, less the saved relative output_dir. A new run then goes beside it and reads its data
    from any folder. Nothing where `run_dir` is not that run's folder (a loose config file, a moved run)."""
    out = Path(saved.get("output_dir") or ".")
    if out.is_absolute():
        return {}
    if ".." in out.parts or run_dir.parent.parts[len(run_dir.parent.parts) - len(out.parts) :] != out.parts:
        return {}
    start = run_dir.parent.parents[len(out.parts) - 1] if out.parts else run_dir.parent
    relative = {k: v for k in RUN_PATHS if isinstance(v := saved.get(k), str) and not Path(v).is_absolute()}
    return {"output_dir": str(run_dir.parent)} | {k: str(start / v) for k, v in relative.items()}


def _config_file(path: str | Path) -> Path:
    """The config.json of --config: the file, or the one in the run folder given."""
    file = Path(path) / "config.json" if Path(path).is_dir() else Path(path)
    # absolute, not resolved: a results folder that is a link stays where it is named
    return Path(os.path.abspath(file))


def run(a: argparse.Namespace) -> None:
    cfg, resume = _train_setup(a)
    result = fit(cfg, resume=resume)
    if not result.is_main:  # under torchrun rank 0 speaks and writes for the run
        return
    save_figure(plot_history(result.history, result.config.loss), result.run_dir / "history.png")
    print(
        f"best val Dice {result.best_val_dice:.4f} at epoch {result.best_epoch}; run folder {result.run_dir}"
    )


def given_data_exists(path: str | None, dataset: str | None) -> None:
    """A --data_path given must hold data: "auto" would train or score the synthetic demo set in its place,
    made in the working folder, and say little of it (the other kinds say what they miss themselves)."""
    if path is None or dataset not in (None, "auto"):
        return
    if not Path(path).expanduser().exists():  # "--data_path=~/pets": the shell leaves that ~ to us
        sys.exit(f"--data_path {path} does not exist; point it at the data's folder (or leave it out)")
    if not holds_data_set(path):
        sys.exit(
            f"--data_path {path} holds no data set: neither the Oxford-IIIT Pet's images/ and "
            f"annotations/trainval.txt (download --data_path {path} fetches them) nor a folder's images/ "
            "and masks/; point it at the data's folder, or give --dataset synthetic for the demo set"
        )

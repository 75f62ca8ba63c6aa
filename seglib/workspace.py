"""A notebook's workspace: `start()`, each notebook's first call, checks its parameters, picks the data
(real when present, a folder of your own, else the synthetic demo set) and says what it runs on; the
`Workspace` it returns gives the notebook its data splits, run folders, configs and results folders.

A relative path in a notebook's parameters is taken from the repository (`project_path`), wherever
papermill, JupyterLab or the runner was started: `data_root="data/oxford-iiit-pet"` is always this
checkout's data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .data import (
    DATASETS,
    SYNTHETIC_DEMO,
    SegmentationDataset,
    check_split_fractions,
    holds_data_set,
    is_folder_root,
    make_synthetic_folder,
    open_split,
    parse_mask_values,
    resolve_data_root,
    synthetic_set_root,
)
from .engine import (
    PROFILES,
    TrainConfig,
    TrainingInterrupted,
    checkpoint_split,
    config_from_profile,
    latest_run,
    load_history,
)
from .engine.progress import shell_of_kernel
from .engine.runs import run_ended
from .engine.runtime import cpu_kind, resolve_device
from .kernels import end_kernel_quickly
from .params import choice, text, whole_number

__all__ = [
    "Workspace",
    "check_data_root",
    "check_training",
    "device_label",
    "project_path",
    "relative_base",
    "start",
]

REPO = Path(__file__).resolve().parents[1]
# An installed seglib (a wheel in site-packages) has no notebooks/ beside it: relative paths are then taken
# from the clone of seglib the current folder is in, else from the current folder (`relative_base`), and
# nothing is written next to the package.
IN_CHECKOUT = (REPO / "notebooks").is_dir()
FOLDER_DEMO = "folder-demo"  # 07's demo folder data set, beside the data root like synthetic-pets


@dataclass
class Workspace:
    """What a notebook runs on: the data folder and kind, the profile and where results go."""

    data_root: str  # as given, absolute (see `project_path`)
    dataset: str  # as given: "auto" | "oxford-pet" | "synthetic" | "folder"
    root: Path  # the folder actually used (images/, annotations/; a folder data set's images/, masks/)
    kind: str  # "oxford-pet" | "synthetic" | "folder"
    profile: str
    results: Path
    device: str = "auto"  # as given: "auto" (the GPU when there is one) | "cpu" | "cuda" | "cuda:1" ...
    folder: dict[str, Any] = field(default_factory=dict)  # a folder data set's mask_values and split

    def data_split(self, split: str, transform: Any = None, **kwargs: Any) -> SegmentationDataset:
        """The `split` of this workspace's data (an Oxford-layout set, or the folder with its settings);
        `kwargs` go to the dataset (image_size, limit, ...)."""
        return open_split(self.root, self.kind, split, transform, **self.folder, **kwargs)

    def run_split(self, ckpt: dict[str, Any], split: str, **kwargs: Any) -> SegmentationDataset:
        """The `split` of this workspace's data read as the run of `ckpt` (a loaded checkpoint) read it: its
        border and a folder's split and mask values (unless this notebook was given some), as the CLI's
        evaluate reads it. `kwargs` go to the dataset (image_size, limit, ...)."""
        given = {"mask_values": self.folder["mask_values"]} if self.folder.get("mask_values") else {}
        ckpt = {**ckpt, "config": {**ckpt.get("config", {}), **given}}
        return checkpoint_split(ckpt, split, self.root, self.kind, **kwargs)

    @property
    def synthetic_root(self) -> Path:
        """Where the runs' configs find the synthetic set: the one `start` chose (`synthetic_set_root`)."""
        return synthetic_set_root(self.data_root, self.dataset)

    @property
    def runs(self) -> Path:
        return self.results / "runs"

    def run_folder(self, given: str, name: str, parameter: str = "run", model: str | None = None) -> Path:
        """The run folder `given` (relative: from the repository), or if "" the newest run called `name`;
        a ValueError naming the notebook's `parameter` where `given` is no run folder with a best.pt, or
        one whose config.json says it trained another `model` than the notebook's parameter is for."""
        if not isinstance(given, str):  # papermill -p unet_run 7 (or None): a number, not a folder's name
            raise ValueError(f'{parameter} must be a run folder, or "" for the newest run, got {given!r}')
        if not given:
            return latest_run(self.runs, name)
        path = project_path(given)
        if path.is_file():
            raise ValueError(
                f"{parameter}={given!r} is a file; give the run folder that holds it ({path.parent})"
            )
        if not (path / "best.pt").is_file():
            raise ValueError(
                f"{parameter}={given!r}: {path} holds no best.pt; give a run folder of notebook 02 or 03 "
                f'(in {self.runs}), or "" for the newest run called {name!r}'
            )
        trained = _trained_model(path)
        if model is not None and trained not in (None, model):  # its tables would name it `model`
            raise ValueError(
                f"{parameter}={given!r}: its run trained a {trained} (its config.json), and {parameter} is "
                f"for a {model} run; give a {model} run (the {trained} run to the notebook's parameter for "
                f"{trained} runs, where it has one; `python -m seglib evaluate --model_path {path / 'best.pt'}` "
                "scores it)"
            )
        return path

    @staticmethod
    def describe_run(run_dir: Path) -> str:
        """`run_dir` and, where its epochs stopped short of its plan (interrupted, not resumed), how far it
        got: its best.pt is then that of a part of the run."""
        try:
            history, cfg = load_history(run_dir)
        except (OSError, ValueError, TypeError):
            return str(run_dir)
        if len(history) >= cfg.epochs:
            return f"{run_dir} ({len(history)} epochs)"
        if run_ended(history, cfg):
            return (
                f"{run_dir} ({len(history)} of {cfg.epochs} epochs: stopped by its patience, {cfg.patience})"
            )
        return (
            f"{run_dir} (STOPPED at epoch {len(history)} of {cfg.epochs}: its best.pt is from those; "
            "resume it with notebook 02/03/07's resume=True, or name another run)"
        )

    def check_run_data(self, ckpt: dict[str, Any], parameter: str = "run") -> str:
        """What `ckpt`'s run trained on, where this notebook's data differs ("" where it is the same); a
        ValueError where the notebook fell back to a synthetic set (dataset "auto", no real data at
        data_root) for a run that trained on other data: its scores would read as real ones."""
        trained, where = ckpt.get("data"), ckpt.get("data_root")
        if trained is None or (trained == self.kind and (where is None or Path(where) == self.root)):
            return ""  # older checkpoints do not say
        if self.kind == "synthetic" and self.dataset == "auto" and trained != "synthetic":
            raise ValueError(
                f"{parameter}: its run trained on {trained} data at {where}, but data_root={self.data_root} "
                f"holds no data, so this notebook would score it on the synthetic demo set; set data_root to "
                f'the run\'s data ({where}), or dataset to "synthetic" to score it there on purpose'
            )
        return f"{parameter}: its run trained on {trained} data at {where}; scored here on {self.kind} data at {self.root}"

    @property
    def machine(self) -> str:
        """Where the notebook computes, e.g. "cpu (AMD EPYC (without native bf16))": what timed budgets buy."""
        return device_label(resolve_device(self.device))

    def figures(self, name: str) -> Path:
        """results/<name>/, created."""
        path = self.results / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def config(self, model: str, recipe: str | None = None, **overrides: Any) -> TrainConfig:
        """The profile's TrainConfig for `model` on this workspace's data and device (`recipe`: default the
        profile's), with `overrides` on top."""
        return config_from_profile(
            self.profile,
            recipe,
            model=model,
            data_root=self.data_root,
            dataset=self.dataset,
            synthetic_root=str(self.synthetic_root),
            output_dir=str(self.runs),
            device=self.device,
            **{**self.folder, **overrides},
        )


def _trained_model(run_dir: Path) -> str | None:
    """The model `run_dir`'s config.json names (None where it cannot tell: the check is then left out)."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return saved.get("model") if isinstance(saved, dict) else None


def start(
    notebook: str,
    data_root: str,
    dataset: str,
    profile: str,
    results_dir: str,
    device: str = "auto",
    **folder: Any,
) -> Workspace:
    """Check a notebook's common parameters (ValueError before any work), resolve the data, say what runs.

    The data: "auto" takes the real data at `data_root`, else a folder data set there, else the
    synthetic demo set beside it (`data_root`'s parent/synthetic-pets, generated on first use).
    "synthetic" takes the synthetic set at `data_root` when `data_root` holds one (the official layout)
    and is not the real data's folder (named oxford-iiit-pet, as the default data/oxford-iiit-pet),
    else the demo set beside it, as "auto" does: the defaults read data/synthetic-pets either way.
    `device` is where the notebook's models train, predict and are scored: "auto" takes the GPU when
    there is one. `folder`: a folder data set's settings (mask_values, val_fraction, test_fraction,
    split_seed, on_corrupt; TrainConfig's defaults otherwise).
    """
    unknown = sorted(
        set(folder) - {"mask_values", "val_fraction", "test_fraction", "split_seed", "on_corrupt"}
    )
    if unknown:
        raise TypeError(f"start() got unknown folder settings {unknown}")
    parse_mask_values(folder.get("mask_values", ""))
    check_split_fractions(folder.get("val_fraction", 0.1), folder.get("test_fraction", 0.1))
    if "split_seed" in folder:  # None would draw another split at each reading: test images trained on
        folder["split_seed"] = whole_number("split_seed", folder["split_seed"])  # -p split_seed 3.0: 3
    if folder.get("on_corrupt", "raise") not in ("raise", "skip"):
        raise ValueError(f'on_corrupt must be "raise" or "skip", got {folder["on_corrupt"]!r}')
    for name, value in (("data_root", data_root), ("results_dir", results_dir), ("device", device)):
        text(name, value)
    resolve_device(device)  # an unknown or absent device fails here, before any work
    end_kernel_quickly()  # the notebook's kernel; papermill counts the notebook done when it has exited
    say_interrupts_briefly(notebook)
    choice("profile", profile, list(PROFILES))
    choice("dataset", dataset, list(DATASETS))
    data_root, results = str(project_path(data_root)), project_path(results_dir)  # whatever the cwd
    check_data_root(Path(data_root), dataset)
    if Path(data_root).name == FOLDER_DEMO and not is_folder_root(data_root):  # 07's default, made once
        make_synthetic_folder(data_root)
    root, kind = resolve_data_root(data_root, dataset, synthetic_set_root(data_root, dataset))
    results.mkdir(parents=True, exist_ok=True)
    ws = Workspace(data_root, dataset, root, kind, profile, results, device, folder)
    demo = root == Path(data_root).parent / SYNTHETIC_DEMO
    what = (
        "the real Oxford-IIIT Pet data"
        if kind == "oxford-pet"
        else ("the SYNTHETIC demo set" if demo else "a SYNTHETIC set")
        + (f" (no real data at {data_root})" if dataset == "auto" else "")
    )
    if kind == "folder":
        pairs = ws.data_split("trainval")
        what = f"the folder data set (images/, masks/; {pairs.split_source})"
    print(f"{notebook}: {what} at {root}; profile {profile!r}; device {ws.machine}; results in {results}")
    return ws


# How each notebook goes on from a stopped training (a run that saved where it stopped).
WAY_ON = {
    "02_train_unet": "set resume = True in the parameters cell and run the notebook again",
    "03_train_resnet34_unet": "set resume = True in the parameters cell and run the notebook again",
    "07_your_own_data": "set resume = True in the parameters cell and run the notebook again",
    "05_scheduler_comparison": "run it again: it reads the runs it finished and goes on with this one",
    "06_recipe_study": "run it again: it reads the runs it finished and trains this one again",
}


def say_interrupts_briefly(notebook: str) -> None:
    """In this notebook's kernel, a training stopped by the stop button (`TrainingInterrupted`) shows its
    message alone, with the notebook's own way on where it has one, not a traceback of 40 lines that ends
    in it (`%tb` shows that). Still an error: Run All stops there, as papermill does."""
    shell = shell_of_kernel()
    if shell is None:
        return

    def brief(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> None:
        said = str(value).rstrip(".") + "."
        if notebook in WAY_ON and getattr(value, "saved", True):
            said += f" In this notebook: {WAY_ON[notebook]}."
        shell.showtraceback((etype, etype(said), tb), exception_only=True)  # tb: for %tb

    shell.set_custom_exc((TrainingInterrupted,), brief)


def check_data_root(data_root: Path, dataset: str) -> None:
    """A ValueError where `data_root` does not exist, or under "auto" holds no data set, and is not where
    the real data or 07's demo would go (a folder named oxford-iiit-pet or folder-demo in a folder that
    exists): a mistyped path would otherwise make a demo set there and train on it."""
    meant = data_root.name in ("oxford-iiit-pet", FOLDER_DEMO) and data_root.parent.is_dir()
    if dataset == "auto" and data_root.is_dir() and not meant and not holds_data_set(data_root):
        raise ValueError(  # "auto" would make the demo set beside it and explore or train on that
            f"data_root {data_root} holds no data set: neither the Oxford-IIIT Pet's images/ and "
            "annotations/trainval.txt nor a folder's images/ and masks/; point it at the data's folder, or give "
            "dataset='synthetic' for the demo set"
        )
    if dataset == "synthetic" or data_root.exists() or meant:
        return
    raise ValueError(
        f"data_root {data_root} does not exist; give the data's folder (a relative path is taken from "
        f"{relative_base()}), or leave data_root out (the real data in data/oxford-iiit-pet there once "
        "downloaded, else the synthetic demo set)"
    )


def check_training(profile: str, model: str, recipe: str | None = None, **overrides: Any) -> None:
    """Raise the ValueError TrainConfig would for a notebook's training parameters (model, recipe, epochs,
    scheduler, seed, ...), before `start` does any work: it can generate the synthetic demo set first."""
    config_from_profile(profile, recipe, model=model, **overrides)


def device_label(dev: torch.device) -> str:
    """`dev` with the GPU's name, or the CPU's and its kind: a CPU without native bf16 trains a third of the
    epochs in the same minutes."""
    return f"{dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else cpu_kind()})"


def project_path(path: str | Path) -> Path:
    """`path` made absolute: a relative path is taken from the repository (the folder holding notebooks/
    and seglib/), not from the working directory, which is wherever papermill or the kernel started; an
    installed seglib, with no repository around it, takes it from the working directory."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else Path(os.path.normpath(relative_base() / path))


def relative_base() -> Path:
    """Where a relative path starts: the repository; for an installed seglib, the clone of seglib that the
    working directory is in (a notebook of the clone runs in its notebooks/), else the working directory."""
    if IN_CHECKOUT:
        return REPO
    here = Path.cwd()
    return next((folder for folder in (here, *here.parents) if _is_clone(folder)), here)


def _is_clone(folder: Path) -> bool:
    try:
        return (folder / "notebooks").is_dir() and 'name = "seglib"' in (
            folder / "pyproject.toml"
        ).read_text()
    except (OSError, UnicodeDecodeError):
        return False

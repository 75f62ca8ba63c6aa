"""The workbook: seven numbered notebooks, executed top to bottom with papermill by `make workbook`.

Notebooks stay thin: they call `seglib`. `start()` is each notebook's first call: it checks the
parameters, picks the data (real when present, a folder of your own, else the synthetic demo set) and
says what it runs on. `run_workbook()` executes 01..07 in order into results/notebooks/, stopping at the
first failure; 07 takes a folder data set (a small demo folder, made on first use, unless given one).

A relative path in a notebook's parameters is taken from the repository (`project_path`), wherever
papermill, JupyterLab or the runner was started: `data_root="data/oxford-iiit-pet"` is always this
checkout's data.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest.mock import patch

import torch

from .data import (
    DATASETS,
    SYNTHETIC_DEMO,
    SegmentationDataset,
    check_split_fractions,
    is_folder_root,
    make_synthetic_folder,
    open_split,
    parse_mask_values,
    resolve_data_root,
    synthetic_set_root,
)
from .engine import PROFILES, TrainConfig, checkpoint_split, config_from_profile, latest_run, load_history
from .engine.allocator import allocator_env
from .engine.runtime import cpu_kind, resolve_device
from .kernels import AskFirstKernelManager, end_kernel_quickly, kernel_manager_settings
from .params import choice, text, whole_number
from .study import json_or_text

__all__ = [
    "Workspace",
    "start",
    "check_training",
    "project_path",
    "run_workbook",
    "execute_notebook",
    "run_notebook",
    "notebook_params",
    "select_notebooks",
    "NOTEBOOKS",
    "FOLDER_NOTEBOOKS",
    "folder_params",
    "main",
]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = (
    "01_data_exploration.ipynb",
    "02_train_unet.ipynb",
    "03_train_resnet34_unet.ipynb",
    "04_evaluation.ipynb",
    "05_scheduler_comparison.ipynb",
    "06_recipe_study.ipynb",
    "07_your_own_data.ipynb",
)
# Notebooks about a folder data set: the runner gives them the folder it was given, else a demo folder.
FOLDER_NOTEBOOKS = ("07_your_own_data.ipynb",)
FOLDER_DEMO = "folder-demo"  # beside the data root, like synthetic-pets


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

    def run_folder(self, given: str, name: str, parameter: str = "run") -> Path:
        """The run folder `given` (relative: from the repository), or if "" the newest run called `name`;
        a ValueError naming the notebook's `parameter` where `given` is no run folder with a best.pt."""
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
        return (
            f"{run_dir} (STOPPED at epoch {len(history)} of {cfg.epochs}: its best.pt is from those; "
            "resume it with notebook 02/03's resume=True, or name another run)"
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
    choice("profile", profile, list(PROFILES))
    choice("dataset", dataset, list(DATASETS))
    data_root, results = str(project_path(data_root)), project_path(results_dir)  # whatever the cwd
    _check_data_root(Path(data_root), dataset)
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


def _check_data_root(data_root: Path, dataset: str) -> None:
    """A ValueError where `data_root` does not exist and is not where the real data or 07's demo would go
    (a folder named oxford-iiit-pet or folder-demo in a folder that exists): a mistyped path would
    otherwise make a demo set there and train on it."""
    meant = data_root.name in ("oxford-iiit-pet", FOLDER_DEMO) and data_root.parent.is_dir()
    if dataset == "synthetic" or data_root.exists() or meant:
        return
    raise ValueError(
        f"data_root {data_root} does not exist; give the data's folder (a relative path is taken from the "
        "repository), or leave data_root out (the real data in data/oxford-iiit-pet once downloaded, else the "
        "synthetic demo set)"
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
    and seglib/), not from the working directory, which is wherever papermill or the kernel started."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else Path(os.path.normpath(REPO / path))


def run_workbook(
    profile: str = "quick",
    data_root: str | Path = REPO / "data" / "oxford-iiit-pet",
    dataset: str = "auto",
    results_dir: str | Path = REPO / "results",
    notebooks: tuple[str, ...] = NOTEBOOKS,
    extra: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Execute the notebooks in order with papermill; executed copies land in results/notebooks/.

    Stops at the first failing notebook with an error naming it and its cell. `notebooks` are named
    as `select_notebooks` takes them, all checked before the first runs. `extra` adds parameters per
    notebook. Returns the folder of the executed notebooks.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(PROFILES)}")
    notebooks = select_notebooks(notebooks)
    out = Path(results_dir).resolve() / "notebooks"
    out.mkdir(parents=True, exist_ok=True)
    params = {
        "data_root": str(Path(data_root).resolve()),
        "dataset": dataset,
        "profile": profile,
        "results_dir": str(Path(results_dir).resolve()),
    }
    # The kernels inherit these (this process is already running): text bars, as papermill cannot show
    # widget ones (papermill issues 617, 765), and jemalloc where installed.
    kernel_env = {"SEGLIB_PROGRESS": "text", **allocator_env()}
    t_all = time.perf_counter()
    # patch.dict: set while inside, the caller's environment as it was after (later processes of the
    # caller must not inherit the kernels' allocator)
    with patch.dict(os.environ, kernel_env):
        for k, name in enumerate(notebooks):
            t0 = time.perf_counter()
            print(f"workbook: running {name} ({profile}) into {out / name}", flush=True)
            data = folder_params(data_root, dataset) if name in FOLDER_NOTEBOOKS else {}
            try:
                _execute(name, out, {**params, **data, **(extra or {}).get(name, {})})
            except (RuntimeError, KeyboardInterrupt):
                _say_not_run(out, notebooks[k + 1 :])
                raise
            print(f"workbook: {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    print(
        f"workbook: all {len(notebooks)} notebooks in {time.perf_counter() - t_all:.0f} s; executed copies in {out}"
    )
    return out


def _say_not_run(out: Path, left: tuple[str, ...]) -> None:
    """Name the notebooks a stopped runner did not run whose executed copies in `out` are an earlier run's:
    beside this run's, they would read as current."""
    old = [name for name in left if (out / name).is_file()]
    if old:
        print(f"workbook: not run this time, their copies in {out} are an earlier run's: {', '.join(old)}")


def _execute(name: str, out: Path, params: dict[str, Any]) -> None:
    """Run notebook `name` into `out` with `params` (`run_notebook`)."""
    run_notebook(REPO / "notebooks" / name, out / name, params)


def run_notebook(source: str | Path, executed: str | Path, parameters: dict[str, Any]) -> None:
    """`execute_notebook`, a failure raised as a RuntimeError that names the notebook, its cell and the
    executed copy: a cell's exception, or a kernel that died (killed from outside, as the system's
    out-of-memory killer does) mid-cell."""
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    name = Path(source).name
    try:
        execute_notebook(source, executed, parameters)
    except PapermillExecutionError as e:
        raise RuntimeError(
            f"{name} failed in cell {e.cell_index} (execution count {e.exec_count}): {e.ename}: {e.evalue}; "
            f"the executed copy with the traceback is {executed}"
        ) from None
    except DeadKernelError:
        raise RuntimeError(
            f"{name}: its kernel died{_running_cell(executed)}, killed from outside (most often by the system "
            "for want of memory: `dmesg` or the container's log names the out-of-memory killer); the executed "
            f"copy up to there is {executed}. A training notebook goes on from its run's last save: 02 and 03 "
            "with --only 02 --param resume=True"
        ) from None


def _running_cell(executed: str | Path) -> str:
    """The words " in cell N": the last cell papermill started in the executed copy ("" if it cannot tell). It marks
    the cell whose kernel died "completed", as it does those that ran; only the cells after it never started."""
    import nbformat

    try:
        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError):  # no copy written, or a damaged one: the message goes without the cell
        return ""
    started = [i for i, c in enumerate(nb.cells) if c.metadata.get("papermill", {}).get("start_time")]
    return f" in cell {started[-1]}" if started else ""


def folder_params(data_root: str | Path, dataset: str) -> dict[str, str]:
    """A folder notebook's data: `data_root` when it is a folder data set ("folder", or "auto" finding
    images/ and masks/), else the demo folder beside it, made from the synthetic generator on first use."""
    if dataset == "folder" or (dataset == "auto" and is_folder_root(data_root)):
        return {}
    demo = Path(data_root).resolve().parent / FOLDER_DEMO
    if not is_folder_root(demo):
        make_synthetic_folder(demo)
    return {"data_root": str(demo), "dataset": "folder"}


def execute_notebook(source: str | Path, executed: str | Path, parameters: dict[str, Any]) -> None:
    """Run the notebook `source` with papermill into `executed`, in notebooks/, on a quiet kernel
    (`seglib.kernels`: no "running over TCP without encryption" at its start, no "KeyboardInterrupt
    caught in kernel" at its end). Raises papermill's PapermillExecutionError when a cell fails; the
    executed copy then holds the traceback."""
    import papermill as pm
    from traitlets.config import Config

    pm.execute_notebook(
        source,
        executed,
        parameters=parameters,
        cwd=str(REPO / "notebooks"),
        progress_bar=False,
        kernel_name="python3",
        config=Config({"KernelManager": kernel_manager_settings()}),  # nbclient hands it to its manager
        kernel_manager_class=AskFirstKernelManager,  # papermill hands it to nbclient
    )


def select_notebooks(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The workbook's notebooks that `names` name, in the order given, each once.

    A name is a notebook's file name, the same without `.ipynb`, or its number ("02"). Every name is
    checked before any notebook runs: one that names no notebook is a ValueError naming it and the
    notebooks there are.
    """
    found = {name: _notebook_named(name) for name in names}
    unknown = [name for name, notebook in found.items() if notebook is None]
    if unknown:
        raise ValueError(
            f"no notebook {', '.join(map(repr, unknown))} in the workbook; choose from {', '.join(NOTEBOOKS)} "
            "(the .ipynb may be left out, or all but the number)"
        )
    return tuple(dict.fromkeys(notebook for notebook in found.values() if notebook))


def _notebook_named(name: str) -> str | None:
    """The one notebook called `name` (with or without .ipynb) or numbered `name`, else None."""
    stem = name.removesuffix(".ipynb")
    matches = [nb for nb in NOTEBOOKS if stem in (nb.removesuffix(".ipynb"), nb.split("_", 1)[0])]
    return matches[0] if len(matches) == 1 else None


RUNNER_OPTIONS = ("profile", "data_root", "dataset", "results_dir")  # main()'s own, not --param's


def notebook_params(
    assignments: list[str], notebooks: tuple[str, ...] = NOTEBOOKS
) -> dict[str, dict[str, Any]]:
    """`NAME=VALUE` strings -> run_workbook's `extra`: each value goes to the notebooks that declare NAME.

    A parameter declared as a string gets VALUE as it is ("12" stays "12"); others get it as JSON when
    it parses (7, 0.5, true), else as a string. A name that none of `notebooks` declares is a ValueError
    naming it and the parameters they have.
    """
    import papermill as pm

    if not assignments:
        return {}
    own = [key for key in (item.partition("=")[0] for item in assignments) if key in RUNNER_OPTIONS]
    if own:  # as --param they would reach the notebooks, not the runner: its folder and line would differ
        raise ValueError(
            f"--param {own[0]!r} is the runner's own option: pass it as --{own[0]} "
            f"(the runner's {', '.join('--' + k for k in RUNNER_OPTIONS)} reach every notebook)"
        )
    declared = {name: pm.inspect_notebook(REPO / "notebooks" / name) for name in notebooks}
    extra: dict[str, dict[str, Any]] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {item!r} is not NAME=VALUE (e.g. --param model_name=unet)")
        takers = [name for name in notebooks if key in declared[name]]
        if not takers:
            known = sorted(set().union(*declared.values()) - set(RUNNER_OPTIONS))  # those go as --NAME
            raise ValueError(
                f"--param {key!r}: no notebook of {list(notebooks)} has it; their parameters: {known} "
                f"(and the runner's own {', '.join('--' + k for k in RUNNER_OPTIONS)})"
            )
        for name in takers:  # papermill's -r/-p distinction, from the notebook's own annotation
            typed = declared[name][key]["inferred_type_name"] != "str"
            extra.setdefault(name, {})[key] = json_or_text(raw) if typed else raw
    return extra


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m seglib.workbook", description=__doc__)
    p.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    here = "a relative path is taken from the current folder"
    p.add_argument("--data_root", default=str(REPO / "data" / "oxford-iiit-pet"), help=here)
    p.add_argument("--dataset", default="auto", choices=DATASETS)
    p.add_argument("--results_dir", default=str(REPO / "results"), help=here)
    p.add_argument(
        "--only",
        nargs="+",
        metavar="NOTEBOOK",
        help="run only these notebooks: file names, with or without .ipynb, or numbers (02)",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a papermill parameter for the notebooks that have it, e.g. model_name=unet (repeatable); as "
        "written to a str parameter, else read as papermill's -p reads it (True, None, .5) or as JSON",
    )
    a = p.parse_args(argv)
    given = a.data_root != p.get_default("data_root")
    if given and a.dataset != "synthetic" and not Path(a.data_root).exists():  # "auto" would make a demo set
        sys.exit(
            f"workbook: error: --data_root {a.data_root} does not exist; give the data's folder, or leave "
            "--data_root out (the real data in data/oxford-iiit-pet once downloaded, else the synthetic demo set)"
        )
    try:
        notebooks = select_notebooks(a.only) if a.only else NOTEBOOKS  # every name, before any runs
        extra = notebook_params(a.param, notebooks)
        run_workbook(a.profile, a.data_root, a.dataset, a.results_dir, notebooks, extra)
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        sys.exit(f"workbook: error: {e}")
    except KeyboardInterrupt:  # the kernel saved what it was training; papermill's traceback says nothing
        sys.exit(
            "workbook: interrupted. A training notebook stopped mid-epoch saved its run's last.pt: 02 and 03 go "
            "on with --only 02 --param resume=True (the executed copy shows where it stopped)"
        )


if __name__ == "__main__":
    main()

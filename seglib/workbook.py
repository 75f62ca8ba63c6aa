"""The workbook: seven numbered notebooks, executed top to bottom with papermill by `make workbook`.

Notebooks stay thin: they call `seglib`, and first `seglib.workspace.start()`, which checks their
parameters and picks the data. `run_workbook()` executes 01..07 in order into results/notebooks/,
stopping at the first failure; 07 takes a folder data set (a small demo folder, made on first use,
unless given one). `python -m seglib.workbook` is its command line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any
from unittest.mock import patch

from .allocator import allocator_env
from .data import DATASETS, is_folder_root, make_synthetic_folder
from .engine import PROFILES
from .kernels import AskFirstKernelManager, kernel_manager_settings
from .study import json_or_text
from .workspace import FOLDER_DEMO, IN_CHECKOUT, REPO, check_data_root, check_training, start

__all__ = [
    "FOLDER_NOTEBOOKS",
    "NOTEBOOKS",
    "execute_notebook",
    "folder_params",
    "main",
    "notebook_params",
    "run_notebook",
    "run_workbook",
    "select_notebooks",
    # notebooks written before seglib.workspace import these two from here
    "check_training",
    "start",
]

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
TRAINING_NOTEBOOKS = ("02_train_unet.ipynb", "03_train_resnet34_unet.ipynb")  # one model each, for 04

NOT_A_CLONE = (
    f"the notebooks are not part of the installed seglib package ({REPO / 'seglib'}); the workbook runs from "
    "a clone of the repository (git clone ..., then make workbook)"
)


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
    if not IN_CHECKOUT:
        raise FileNotFoundError(NOT_A_CLONE)
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
            f"copy up to there is {executed}. The training notebooks 02, 03 and 07 go on from "
            "their run's last save with --only NAME --param resume=True, as --only 02 --param resume=True"
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

    pm.execute_notebook(  # papermill formats both paths with the parameters: a "{" in them is literal here
        str(source).replace("{", "{{").replace("}", "}}"),
        str(executed).replace("{", "{{").replace("}", "}}"),
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
        if key == "model_name" and set(TRAINING_NOTEBOOKS) <= set(takers):
            # each trains its own model for 04 to compare: both would train this one, and 04 compare
            # the newest runs of the two models, older ones included, unsaid
            raise ValueError(
                f"--param model_name={raw} would reach {' and '.join(TRAINING_NOTEBOOKS)}, which train one model "
                "each for 04 to compare: give --only the notebooks it is for (--only 06_recipe_study.ipynb)"
            )
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
    """`python -m seglib.workbook` (`make workbook`): run the notebooks with papermill into results/."""
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
    if not IN_CHECKOUT:
        sys.exit(f"workbook: error: {NOT_A_CLONE}")
    given = a.data_root != p.get_default("data_root")
    if given and a.dataset != "synthetic" and not Path(a.data_root).exists():  # "auto" would make a demo set
        sys.exit(
            f"workbook: error: --data_root {a.data_root} does not exist; give the data's folder, or leave "
            "--data_root out (the real data in data/oxford-iiit-pet once downloaded, else the synthetic demo set)"
        )
    try:
        if given:  # one that holds no data set: "auto" would explore and train on a demo set made beside it
            check_data_root(Path(a.data_root).resolve(), a.dataset)
        notebooks = select_notebooks(a.only) if a.only else NOTEBOOKS  # every name, before any runs
        extra = notebook_params(a.param, notebooks)
        run_workbook(a.profile, a.data_root, a.dataset, a.results_dir, notebooks, extra)
    except (RuntimeError, ValueError, OSError) as e:  # OSError: a read-only or full results folder
        sys.exit(f"workbook: error: {e}")
    except KeyboardInterrupt:  # the kernel saved what it was training; papermill's traceback says nothing
        sys.exit(
            "workbook: interrupted. A training notebook stopped mid-epoch saved its run's last.pt: 02, 03 and 07 go "
            "on with --only NAME --param resume=True, as --only 02 --param resume=True (the executed copy shows "
            "where it stopped)"
        )


if __name__ == "__main__":
    main()

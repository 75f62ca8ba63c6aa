"""The workbook: six numbered notebooks, executed top to bottom with papermill by `make workbook`.

Notebooks stay thin: they call `seglib`. `start()` is each notebook's first call: it checks the
parameters, picks the data (real when present, else the synthetic demo set) and says what it runs on.
`run_workbook()` executes 01..06 in order into results/notebooks/, stopping at the first failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import DATASETS, resolve_data_root
from .engine import PROFILES, TrainConfig, config_from_profile
from .study import json_or_text

__all__ = ["Workspace", "start", "run_workbook", "notebook_params", "allocator_env", "NOTEBOOKS", "main"]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = (
    "01_data_exploration.ipynb",
    "02_train_unet.ipynb",
    "03_train_resnet34_unet.ipynb",
    "04_evaluation.ipynb",
    "05_scheduler_comparison.ipynb",
    "06_recipe_study.ipynb",
)


@dataclass
class Workspace:
    """What a notebook runs on: the data folder and kind, the profile and where results go."""

    data_root: str  # as given (the real data's place)
    dataset: str  # as given: "auto" | "oxford-pet" | "synthetic"
    root: Path  # the folder actually used (images/, annotations/)
    kind: str  # "oxford-pet" | "synthetic"
    profile: str
    results: Path

    @property
    def synthetic_root(self) -> Path:
        return Path(self.data_root).parent / "synthetic-pets"

    @property
    def runs(self) -> Path:
        return self.results / "runs"

    def figures(self, name: str) -> Path:
        """results/<name>/, created."""
        path = self.results / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def config(self, model: str, recipe: str | None = None, **overrides: Any) -> TrainConfig:
        """The profile's TrainConfig for `model` on this workspace's data (`recipe`: default the profile's),
        with `overrides` on top."""
        return config_from_profile(
            self.profile,
            recipe,
            model=model,
            data_root=self.data_root,
            dataset=self.dataset,
            synthetic_root=str(self.synthetic_root),
            output_dir=str(self.runs),
            **overrides,
        )


def start(notebook: str, data_root: str, dataset: str, profile: str, results_dir: str) -> Workspace:
    """Check a notebook's common parameters (ValueError before any work), resolve the data, say what runs."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(PROFILES)}")
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")
    synthetic_root = Path(data_root).parent / "synthetic-pets"
    root, kind = resolve_data_root(data_root, dataset, synthetic_root)
    results = Path(results_dir)
    results.mkdir(parents=True, exist_ok=True)
    ws = Workspace(data_root, dataset, root, kind, profile, results)
    what = (
        "the real Oxford-IIIT Pet data"
        if kind == "oxford-pet"
        else "the SYNTHETIC demo set (no real data found)"
    )
    print(f"{notebook}: {what} at {root}; profile {profile!r}; results in {results}")
    return ws


JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")  # Debian's libjemalloc2


def allocator_env() -> dict[str, str]:
    """Environment for the notebook kernels: jemalloc that keeps freed memory, when it is installed.

    glibc hands the big activation buffers (over 32 MB: always mmap) back to the OS at every step and
    faults them in again; jemalloc with decay off keeps them, for fewer page faults and faster CPU
    training steps (docs/performance.md, "allocator"). SEGLIB_JEMALLOC=0 turns it off.
    """
    if os.environ.get("SEGLIB_JEMALLOC", "1") == "0" or not JEMALLOC.is_file() or "LD_PRELOAD" in os.environ:
        return {}
    return {"LD_PRELOAD": str(JEMALLOC), "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1,retain:true"}


def run_workbook(
    profile: str = "quick",
    data_root: str | Path = REPO / "data" / "oxford-iiit-pet",
    dataset: str = "auto",
    results_dir: str | Path = REPO / "results",
    notebooks: tuple[str, ...] = NOTEBOOKS,
    extra: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Execute the notebooks in order with papermill; executed copies land in results/notebooks/.

    Stops at the first failing notebook with an error naming it and its cell. `extra` adds
    parameters per notebook. Returns the folder of the executed notebooks.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(PROFILES)}")
    out = Path(results_dir).resolve() / "notebooks"
    out.mkdir(parents=True, exist_ok=True)
    params = {
        "data_root": str(Path(data_root).resolve()),
        "dataset": dataset,
        "profile": profile,
        "results_dir": str(Path(results_dir).resolve()),
    }
    os.environ["SEGLIB_PROGRESS"] = "text"  # papermill cannot show widget bars (papermill issues 617, 765)
    os.environ.update(allocator_env())  # the kernels inherit it; this process is already running
    t_all = time.perf_counter()
    for name in notebooks:
        t0 = time.perf_counter()
        print(f"workbook: running {name} ({profile})", flush=True)
        try:
            pm.execute_notebook(
                REPO / "notebooks" / name,
                out / name,
                parameters={**params, **(extra or {}).get(name, {})},
                cwd=str(REPO / "notebooks"),
                progress_bar=False,
                kernel_name="python3",
            )
        except PapermillExecutionError as e:
            raise RuntimeError(
                f"{name} failed in cell {e.cell_index} (execution count {e.exec_count}): {e.ename}: {e.evalue}; "
                f"the executed copy with the traceback is {out / name}"
            ) from None
        print(f"workbook: {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    print(
        f"workbook: all {len(notebooks)} notebooks in {time.perf_counter() - t_all:.0f} s; executed copies in {out}"
    )
    return out


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
    declared = {name: pm.inspect_notebook(REPO / "notebooks" / name) for name in notebooks}
    extra: dict[str, dict[str, Any]] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {item!r} is not NAME=VALUE (e.g. --param model_name=unet)")
        takers = [name for name in notebooks if key in declared[name]]
        if not takers:
            known = sorted(set().union(*declared.values()))
            raise ValueError(
                f"--param {key!r}: no notebook of {list(notebooks)} has it; their parameters: {known}"
            )
        for name in takers:  # papermill's -r/-p distinction, from the notebook's own annotation
            typed = declared[name][key]["inferred_type_name"] != "str"
            extra.setdefault(name, {})[key] = json_or_text(raw) if typed else raw
    return extra


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m seglib.workbook", description=__doc__)
    p.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    p.add_argument("--data_root", default=str(REPO / "data" / "oxford-iiit-pet"))
    p.add_argument("--dataset", default="auto", choices=DATASETS)
    p.add_argument("--results_dir", default=str(REPO / "results"))
    p.add_argument("--only", nargs="*", help="run only these notebooks (file names)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a papermill parameter for the notebooks that have it, e.g. model_name=unet (repeatable)",
    )
    a = p.parse_args(argv)
    notebooks = tuple(a.only) if a.only else NOTEBOOKS
    try:
        extra = notebook_params(a.param, notebooks)
        run_workbook(a.profile, a.data_root, a.dataset, a.results_dir, notebooks, extra)
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        sys.exit(f"workbook: error: {e}")


if __name__ == "__main__":
    main()

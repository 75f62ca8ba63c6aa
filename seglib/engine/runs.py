"""Finding earlier runs: notebooks never share kernel state, later ones read runs from results/."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .config import TrainConfig

__all__ = ["latest_run", "load_history"]


def latest_run(runs_dir: str | Path, name: str) -> Path:
    """The newest run folder called `name` or `name-2`, `name-3`, ... that has a best.pt."""
    runs_dir = Path(runs_dir)
    found = [
        p.parent
        for p in runs_dir.glob(f"{name}*/best.pt")
        if p.parent.name == name
        or (p.parent.name.startswith(f"{name}-") and p.parent.name[len(name) + 1 :].isdigit())
    ]
    if not found:
        raise FileNotFoundError(
            f"no run called {name!r} with a best.pt in {runs_dir}; run the training notebook "
            "(02 or 03) first, or set the run parameter to an existing run folder"
        )
    return max(found, key=lambda p: (p / "best.pt").stat().st_mtime)


def load_history(run_dir: str | Path) -> tuple[pd.DataFrame, TrainConfig]:
    """A run's per-epoch history and its config."""
    run_dir = Path(run_dir)
    return pd.read_csv(run_dir / "history.csv"), TrainConfig.load(run_dir / "config.json")

"""Optional Weights & Biases logging: works offline (WANDB_MODE=offline), skipped when not installed."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

__all__ = ["WandbLogger"]


class WandbLogger:
    """Logs a run's config and per-epoch metrics to W&B when enabled and available; else does nothing."""

    def __init__(self, enabled: bool, project: str, name: str, config: dict[str, Any], run_dir: Path) -> None:
        self.run = None
        if not enabled:
            return
        try:
            import wandb
        except ImportError:
            warnings.warn(
                "use_wandb=True but the wandb package is not installed; training goes on without it "
                "(pip install -e '.[wandb]' in a checkout, else pip install wandb, to enable it)",
                stacklevel=3,
            )
            return
        self.run = wandb.init(project=project, name=name, config=config, dir=str(run_dir), reinit=True)

    @property
    def active(self) -> bool:
        return self.run is not None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None

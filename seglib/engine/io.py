"""Atomic file writes of the engine's files: checkpoints, CSV tables, text (`seglib.atomic` does the
writing: a temporary file beside the target, fsync, os.replace)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pandas as pd
import torch

from ..atomic import atomic_write

__all__ = ["atomic_write", "atomic_write_text", "atomic_torch_save", "atomic_write_csv"]


def _atomic(path: str | Path, write: Callable[[IO[Any]], object], mode: str = "wb") -> None:
    """`write` into `path` atomically; a failure names the file (`seglib.atomic.write_error`)."""
    with atomic_write(path, mode) as f:
        write(f)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically: the old file or the new one, never half of it."""
    _atomic(path, lambda f: f.write(text), mode="w")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save(obj)` to `path` atomically (checkpoints)."""
    _atomic(path, lambda f: torch.save(obj, f))


def atomic_write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """`df` as CSV (no index) to `path` atomically."""
    _atomic(path, lambda f: df.to_csv(f, index=False), mode="w")

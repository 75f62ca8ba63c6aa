"""Atomic file writes: a temporary file in the same folder, flush, fsync, os.replace.

A crash or a kill at any moment leaves either the previous complete file or the new complete file. The
temporary file's name carries its writer (`.<file>.HOST-PID.<random>.tmp`): the next write into the
folder removes those of killed processes (`seglib.leftovers`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd
import torch

from ..leftovers import owner_tag, remove_leftovers

__all__ = ["atomic_write", "atomic_write_text", "atomic_torch_save", "atomic_write_csv"]


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path.parent, ".*.tmp", _tmp_tag, what="unfinished save")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owner_tag()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _tmp_tag(name: str) -> str:
    """The writer of `.<file>.HOST-PID.<random>.tmp` (mkstemp's random part has no dot)."""
    parts = name.removesuffix(".tmp").rsplit(".", 2)
    return parts[1] if len(parts) == 3 else ""


def _atomic(path: str | Path, write: Callable[[IO[Any]], None], mode: str = "wb") -> None:
    try:
        with atomic_write(path, mode) as f:
            write(f)
    except OSError as e:
        raise OSError(
            e.errno,
            f"could not write {path} ({e.strerror or e}); the previous version of the file, "
            "if any, is intact. Free some disk space or choose another output_dir",
        ) from e


def atomic_write_text(path: str | Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text), mode="w")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    _atomic(path, lambda f: torch.save(obj, f))


def atomic_write_csv(df: pd.DataFrame, path: str | Path) -> None:
    _atomic(path, lambda f: df.to_csv(f, index=False), mode="w")

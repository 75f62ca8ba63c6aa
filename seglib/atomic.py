"""Atomic file writes: a temporary file in the same folder, flush, fsync, os.replace.

A crash or a kill at any moment leaves either the previous complete file or the new complete file. The
temporary file's name carries its writer (`.<file>.HOST-PID.<random>.tmp`): the next write into the
folder removes those of killed processes (`seglib.leftovers`). Standard library only: the data layer,
the engine and the faces all write through here (the engine's torch and pandas writers: `engine.io`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .leftovers import owner_tag, remove_leftovers

__all__ = ["atomic_path", "atomic_write"]


@contextlib.contextmanager
def _replacing(path: str | Path) -> Iterator[tuple[int, Path]]:
    """A new temporary file beside `path` (its open descriptor and path); it replaces `path` when the block
    ends without error and is removed otherwise. The block syncs it to disk first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path.parent, ".*.tmp", _tmp_tag, what="unfinished save")
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owner_tag()}.", suffix=".tmp")
    tmp = Path(name)
    try:
        os.chmod(tmp, _new_file_mode())  # mkstemp's 0600 would keep the results from other users
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file's path beside `path`, for writers that take a file name (exporters); on success
    it replaces `path`, on error it is removed."""
    with _replacing(path) as (fd, tmp):
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as f:  # the writer closed its own handle: sync the file by name
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success it replaces `path`, on error it is removed."""
    with _replacing(path) as (fd, _), os.fdopen(fd, mode, encoding=encoding) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


@functools.cache
def _new_file_mode() -> int:
    """The mode `open` gives a new file: 0666 less the process's umask (read once; setting it to read it
    is not thread-safe, so Linux's /proc is asked first)."""
    try:
        status = Path("/proc/self/status").read_text()
        umask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _tmp_tag(name: str) -> str:
    """The writer of `.<file>.HOST-PID.<random>.tmp` (mkstemp's random part has no dot)."""
    parts = name.removesuffix(".tmp").rsplit(".", 2)
    return parts[1] if len(parts) == 3 else ""

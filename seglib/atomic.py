"""Atomic file writes: a temporary file in the same folder, flush, fsync, os.replace.

A crash or a kill at any moment leaves either the previous complete file or the new complete file. The
temporary file's name carries its writer (`.<file>.HOST-PID.<random>.tmp`, `<file>` cut where the whole
would pass the 255-byte limit of a name): the next write into the folder removes those of killed
processes (`seglib.leftovers`). A write that fails (a full disk) raises an OSError that names the file and
says the previous version is intact. Standard library only: the data layer, the engine and the faces all
write through here (the engine's torch and pandas writers: `engine.io`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .leftovers import owner_tag, remove_leftovers

__all__ = ["atomic_path", "atomic_write", "write_error"]

NAME_MAX = 255  # bytes in one file name: ext4, XFS, APFS, NTFS (in UTF-16 units)
_RANDOM = 8  # the length of mkstemp's random part
# A full disk, a spent quota, a file over a size limit (ulimit -f): errors whose message says to free space
NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
INTACT = "the previous version of the file, if any, is intact"


@contextlib.contextmanager
def _replacing(path: str | Path) -> Iterator[tuple[int, Path]]:
    """A new temporary file beside `path` (its open descriptor and path); it replaces `path` when the block
    ends without error and is removed otherwise. The block syncs it to disk first."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path.parent, ".*.tmp", _tmp_tag, what="unfinished save")
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path.name), suffix=".tmp")
    except OSError as e:
        raise write_error(path, e) from e
    tmp = Path(name)
    try:
        os.chmod(tmp, _new_file_mode())  # mkstemp's 0600 would keep the results from other users
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if (cause := _os_error(e)) is not None:
            raise write_error(path, cause) from e
        raise


def write_error(path: str | Path, e: OSError) -> OSError:
    """`e` (a failed write of `path`) as an OSError of the same kind that names the file, says that its
    previous version is intact (the writes are atomic) and, where the disk is full, what to do."""
    todo = ". Free some disk space, or write to another folder" if e.errno in NO_ROOM else ""
    return OSError(e.errno, f"could not write {path} ({e.strerror or e}); {INTACT}{todo}")


def _os_error(e: BaseException) -> OSError | None:
    """The OSError to name the file by: `e` itself, or a full disk's that `e` was raised while handling. A
    writer in C++ (torch.save) meets a full disk as an OSError from the file's write and raises its own
    RuntimeError (`unexpected pos ...`) instead, naming neither the file nor the disk."""
    if isinstance(e, OSError):
        return None if INTACT in str(e) else e  # a write within a write is named once
    if not isinstance(e, Exception):  # Ctrl-C, exit
        return None
    seen: set[int] = set()
    cause = e.__cause__ or e.__context__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, OSError) and cause.errno in NO_ROOM:
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _tmp_prefix(name: str) -> str:
    """`.<file>.HOST-PID.` for mkstemp, `<file>` cut to what keeps the temporary name within NAME_MAX: a
    legal 247-byte name would otherwise give a temporary name over the limit (ENAMETOOLONG)."""
    tag = owner_tag()
    room = NAME_MAX - len(os.fsencode(f"..{tag}.")) - _RANDOM - len(".tmp")
    short = os.fsencode(name)[:room].decode(sys.getfilesystemencoding(), "ignore")  # no half a character
    return f".{short}.{tag}."


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
    """Open a temporary file beside `path`; on success it replaces `path`, on error it is removed. Text is
    UTF-8 (`encoding` unless given), whatever the locale; a file name that is not UTF-8 (a Latin-1 disk) is
    written as its bytes."""
    text = "b" not in mode
    encoding, errors = (encoding or "utf-8", "surrogateescape") if text else (None, None)
    with _replacing(path) as (fd, _), os.fdopen(fd, mode, encoding=encoding, errors=errors) as f:
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

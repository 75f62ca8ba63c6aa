"""Leftovers of killed processes: temporary files and folders named after their writer, removed later.

A cache build or a checkpoint save writes to a temporary name first (`<name>.partial-HOST-PID`,
`.<file>.HOST-PID.<random>.tmp`) and renames it when complete. A SIGKILL leaves the temporary behind,
and it can be hundreds of MB. The next build or save in the same folder removes those whose process no
longer runs on this machine; a live writer's, or another machine's (a shared disk), is never touched.
Standard library only: both the data layer and the engine use it.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

__all__ = ["host", "owner_tag", "partial_owner", "writer_is_gone", "remove_leftovers"]


def host() -> str:
    """This machine's name without dots (a tag sits between the dots of a file name)."""
    return socket.gethostname().replace(".", "_") or "localhost"


def owner_tag() -> str:
    """`HOST-PID` of this process: what a temporary name carries so that a later process can tell
    whether its writer still runs."""
    return f"{host()}-{os.getpid()}"


def partial_owner(name: str) -> str:
    """The builder of a folder `<name>.partial-HOST-PID`; a bare PID (named before hosts were) is this
    machine's."""
    tag = name.partition(".partial-")[2]
    return f"{host()}-{tag}" if tag.isdigit() else tag


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def writer_is_gone(tag: str) -> bool:
    """True if `tag` is `HOST-PID` of this machine and that process no longer runs. False for a live
    process, another machine's tag, or anything that is not a tag: those are never removed."""
    name, _, pid = tag.rpartition("-")
    if name != host() or not pid.isdigit():
        return False
    return int(pid) != os.getpid() and not _running(int(pid))


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def remove_leftovers(
    folder: Path,
    pattern: str,
    tag_of: Callable[[str], str],
    log: Callable[[str], object] = print,
    what: str = "leftover",
) -> list[Path]:
    """Remove the entries of `folder` matching the glob `pattern` whose writer (`tag_of(name)`) no
    longer runs, and say so in one line to `log`. Returns what was removed."""
    if not folder.is_dir():
        return []
    removed, freed = [], 0
    for path in sorted(folder.glob(pattern)):
        if not writer_is_gone(tag_of(path.name)):
            continue
        try:
            size = _size(path)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:  # another process removed it meanwhile
            continue
        removed.append(path)
        freed += size
    if removed:
        names = ", ".join(p.name for p in removed[:3]) + (
            f" and {len(removed) - 3} more" if len(removed) > 3 else ""
        )
        log(
            f"seglib: removed {len(removed)} {what}(s) left by processes that no longer run, "
            f"{freed / 1e6:.1f} MB, from {folder}: {names}"
        )
    return removed

"""The memory allocator of the process: jemalloc that keeps freed memory, when it is installed.

glibc hands every buffer over 32 MB (always mmap'ed) back to the OS when it is freed and faults it in
again at the next step; a CPU training step allocates dozens of such activation buffers. jemalloc with
decay off keeps them (docs/performance.md, "allocator"). An allocator is chosen when a process starts
(LD_PRELOAD), so the faces choose it for the processes they start: the CLI re-executes itself, the
workbook and `make lab` start their kernels with it. SEGLIB_JEMALLOC=0 turns it off.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["JEMALLOC_CONF", "jemalloc_path", "allocator_env", "allocator_name", "reexec_with_allocator"]

JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1,retain:true"
# Debian/Ubuntu's libjemalloc2 (apt-get install libjemalloc2), then a conda environment's (environment.yml).
_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2")


def jemalloc_path() -> Path | None:
    """The jemalloc library to preload, or None when none is installed."""
    for path in (*_CANDIDATES, Path(sys.prefix) / "lib" / "libjemalloc.so.2"):
        if Path(path).is_file():
            return Path(path)
    return None


def allocator_env() -> dict[str, str]:
    """Environment that makes a new process allocate with jemalloc; {} when it is off, missing, or when
    LD_PRELOAD is already set (someone chose for this process tree)."""
    lib = jemalloc_path()
    if os.environ.get("SEGLIB_JEMALLOC", "1") == "0" or lib is None or "LD_PRELOAD" in os.environ:
        return {}
    return {"LD_PRELOAD": str(lib), "MALLOC_CONF": JEMALLOC_CONF}


def allocator_name() -> str:
    """ "jemalloc" when this process runs with it, else "glibc" (the system's malloc)."""
    return "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "glibc"


def reexec_with_allocator(argv: list[str]) -> None:
    """Replace this process by `python -m seglib <argv>` under jemalloc, when `allocator_env` offers it.

    Returns (doing nothing) otherwise. Call it before any work: the process starts again from its first
    line, with the same PID, arguments and environment (torchrun's included) plus the allocator's.
    """
    env = allocator_env()
    if env and sys.platform.startswith("linux"):
        os.execve(sys.executable, [sys.executable, "-m", "seglib", *argv], {**os.environ, **env})


if __name__ == "__main__":  # `make lab`: `env $(python -m seglib.engine.allocator) jupyter lab ...`
    print(" ".join(f"{k}={v}" for k, v in allocator_env().items()))

"""The memory allocator of the process: jemalloc that keeps freed memory, when it is installed.

glibc hands every buffer over 32 MB (always mmap'ed) back to the OS when it is freed and faults it in
again at the next step; a CPU training step allocates dozens of such activation buffers. jemalloc with
decay off keeps them (docs/performance.md, "allocator"). An allocator is chosen when a process starts
(LD_PRELOAD), so the faces choose it for the processes they start: the CLI re-executes itself, the
workbook and `make lab` start their kernels with it. SEGLIB_JEMALLOC=0 turns it off.

With decay off, jemalloc never hands a freed page back, and in a long-lived process that trains one run
after another (a notebook kernel running notebook 06's study) it can stop reusing them: the kernel's
memory grows while what it holds live does not (docs/performance.md, "The allocator").
`release_idle_memory`, called after every epoch and evaluation, hands them back once they pass a bound.

Standard library only, below the layers (as `atomic`): the command line re-executes itself before it
imports torch, and `python -m seglib.jemalloc` prints its line without importing the engine.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "JEMALLOC_CONF",
    "jemalloc_path",
    "jemalloc_env",
    "allocator_env",
    "allocator_name",
    "allocator_advice",
    "reexec_with_allocator",
    "python_options",
    "release_idle_memory",
]

JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1,retain:true"
IDLE_BYTES = 1 << 30  # freed memory jemalloc may keep; past it, one purge per epoch (refaulted once)
_ALL_ARENAS = 4096  # jemalloc's MALLCTL_ARENAS_ALL
# Debian/Ubuntu's libjemalloc2 (apt-get install libjemalloc2), then a conda environment's (environment.yml).
_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2")


def jemalloc_path() -> Path | None:
    """The jemalloc library to preload, or None when none is installed."""
    for path in (*_CANDIDATES, Path(sys.prefix) / "lib" / "libjemalloc.so.2"):
        # ld.so splits LD_PRELOAD at spaces and colons: an environment under "/home/Jo Doe" would preload
        # "/home/Jo", fail with an error in every process, and run on glibc
        if Path(path).is_file() and not any(c in str(path) for c in " \t:"):
            return Path(path)
    return None


def jemalloc_env() -> dict[str, str]:
    """The variables that start a process under jemalloc; {} when it is off (SEGLIB_JEMALLOC=0) or missing."""
    lib = jemalloc_path()
    if os.environ.get("SEGLIB_JEMALLOC", "1") == "0" or lib is None:
        return {}
    return {"LD_PRELOAD": str(lib), "MALLOC_CONF": JEMALLOC_CONF}


def allocator_env() -> dict[str, str]:
    """Environment that makes a new process allocate with jemalloc (`jemalloc_env`); {} also when
    LD_PRELOAD is already set (someone chose for this process tree)."""
    return {} if "LD_PRELOAD" in os.environ else jemalloc_env()


def allocator_name() -> str:
    """ "jemalloc" when this process runs with it, else "glibc" (the system's malloc): what is loaded, not
    what LD_PRELOAD asked for, which ld.so skips (saying so) when it cannot load it."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # no /proc (macOS): what was asked for
        maps = os.environ.get("LD_PRELOAD", "")
    return "jemalloc" if "libjemalloc" in maps else "glibc"


def allocator_advice(in_kernel: bool) -> str:
    """How to start this process under jemalloc, where it is installed but not loaded ("" elsewhere): a
    notebook kernel that VS Code, nbconvert or `jupyter execute` started, or a script."""
    if allocator_name() == "jemalloc" or not allocator_env():
        return ""
    if in_kernel:
        return "jemalloc is installed: choose the kernel `python -m seglib.jemalloc --kernel` adds"
    return "jemalloc is installed: start Python under it with env $(python -m seglib.jemalloc)"


def reexec_with_allocator(argv: list[str], program: tuple[str, ...] = ("-m", "seglib")) -> None:
    """Replace this process by `python <program> <argv>` under jemalloc, when `allocator_env` offers it.

    `program`: `-m seglib`, or the path of the installed `seglib` script that started it (whose usage
    lines name `seglib`). Returns (doing nothing) otherwise. Call it before any work: the process starts
    again from its first line, with the same PID, arguments and environment (torchrun's included) plus
    the allocator's.
    """
    env = allocator_env()
    if env and sys.platform.startswith("linux"):
        python = python_options(sys.orig_argv[1:])  # -W error, -X dev, -u hold in the new process too
        os.execve(sys.executable, [sys.executable, *python, *program, *argv], {**os.environ, **env})


def python_options(args: list[str]) -> list[str]:
    """python's own options in a command line's arguments (`sys.orig_argv[1:]`) before `-m MODULE`:
    `-u`, `-W error`, `-Xdev`, and short options run together (`-uOm seglib`: `-uO`)."""
    kept: list[str] = []
    rest = iter(args)
    for arg in rest:
        if arg.startswith("--"):  # --check-hash-based-pycs is the one long option with a value
            kept += [arg, next(rest, "")] if arg == "--check-hash-based-pycs" else [arg]
            continue
        if not arg.startswith("-") or arg == "-":  # a script or stdin: no -m
            break
        for i, letter in enumerate(arg[1:], start=1):
            if letter == "m":  # the module follows: what came before it in this argument is kept
                return kept + ([arg[:i]] if i > 1 else [])
            if letter in "WX":  # a value follows, in this argument or the next
                kept += [arg] if i + 1 < len(arg) else [arg, next(rest, "")]
                break
        else:
            kept.append(arg)
    return kept


def _mallctl() -> Callable[..., int] | None:
    """jemalloc's mallctl when jemalloc is this process's allocator (preloaded), else None."""
    try:
        return ctypes.CDLL(None).mallctl  # glibc has no mallctl: found only when jemalloc is loaded
    except (AttributeError, OSError):
        return None


def _jemalloc_stat(mallctl: Callable[..., int], name: str) -> int:
    value, size = ctypes.c_size_t(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_size_t))
    mallctl(name.encode(), ctypes.byref(value), ctypes.byref(size), None, ctypes.c_size_t(0))
    return value.value


def release_idle_memory(keep_bytes: int = IDLE_BYTES) -> int:
    """Hand the freed pages jemalloc keeps back to the OS when they exceed `keep_bytes`; return how many bytes
    of resident memory that released (0: under glibc, or below the bound).

    Below the bound nothing is done, so a run's step-to-step reuse of its buffers (why decay is off) stays.
    """
    mallctl = _mallctl()
    if mallctl is None:
        return 0
    refresh = ctypes.c_uint64(1)  # the stats are a snapshot, taken anew at each "epoch" write
    mallctl(b"epoch", None, None, ctypes.byref(refresh), ctypes.c_size_t(ctypes.sizeof(refresh)))
    resident, allocated = (_jemalloc_stat(mallctl, f"stats.{k}") for k in ("resident", "allocated"))
    if resident - allocated <= keep_bytes:
        return 0
    mallctl(f"arena.{_ALL_ARENAS}.purge".encode(), None, None, None, ctypes.c_size_t(0))
    mallctl(b"epoch", None, None, ctypes.byref(refresh), ctypes.c_size_t(ctypes.sizeof(refresh)))
    return max(0, resident - _jemalloc_stat(mallctl, "stats.resident"))

"""Loader worker processes: waiting for one that was killed, and ending them all when fit or evaluate ends.

torch learns that a worker died from SIGCHLD: its handler raises "DataLoader worker (pid N) is killed by
signal: ..." wherever the main thread is when Python runs it. A worker killed while it passed a batch
shows first as a reset connection, and torch's report then came in the middle of fit's own message about
it, or after, and took its place. `ended_workers` waits for the dying worker and reaps it, after which
torch's handler finds nothing left to report.
"""

from __future__ import annotations

import multiprocessing.connection
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from typing import Any

from torch.utils.data import DataLoader

__all__ = [
    "ENDING_WAIT_S",
    "death_said",
    "ended_workers",
    "exit_code",
    "how_it_ended",
    "settled",
    "stop_workers",
    "worker_lost",
    "worker_processes",
    "workers_stopped",
]

# How long fit and evaluate wait for a worker to end after an error that says one is ending (a reset connection):
# a killed process is gone in milliseconds; a healthy one never ends, and the wait is then spent in full.
ENDING_WAIT_S = 2.0


def _iterators(loaders: Iterable[object]) -> list[Any]:
    """The loaders' live multi-process iterators (a persistent one stays between epochs)."""
    found: list[Any] = []  # torch's _MultiProcessingDataLoaderIter, private
    for loader in loaders:
        iterator = loader._iterator if isinstance(loader, DataLoader) else None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            found.append(iterator)
    return found


def worker_lost(e: BaseException, loaders: Iterable[object]) -> bool:
    """Whether `e` says a loader worker is gone: torch's "DataLoader worker (pid N) is killed by signal: ..."
    or "... (pid(s) N) exited unexpectedly", or the reset connection of a batch on its way from it."""
    # not torch's "Caught ValueError in DataLoader worker process 0": the worker's own error, passed on
    workers = any(getattr(loader, "num_workers", 0) for loader in loaders)  # a resident set has none
    return workers and (isinstance(e, ConnectionResetError) or "DataLoader worker (pid" in str(e))


def worker_processes(loaders: Iterable[object]) -> list[BaseProcess]:
    """The worker processes the loaders hold now (none for a loader without workers or not yet iterated)."""
    return [w for iterator in _iterators(loaders) for w in getattr(iterator, "_workers", ())]


def ended_workers(loaders: Iterable[object], wait: float = ENDING_WAIT_S) -> list[BaseProcess]:
    """The loaders' workers that have ended, after waiting up to `wait` seconds for one to end.

    Each is reaped (its `exitcode` set), so torch's SIGCHLD handler no longer reports it. torch's report
    may still come while this waits: the caller takes it as the same news (a RuntimeError)."""
    workers = worker_processes(loaders)
    ready = multiprocessing.connection.wait([w.sentinel for w in workers], timeout=wait) if workers else []
    for w in workers:
        if w.sentinel in ready:  # its end closed the sentinel, a moment before it can be reaped: join waits
            w.join(timeout=wait)
    return [w for w in workers if not w.is_alive()]  # is_alive() reaps one that has ended


def settled(error: BaseException, loaders: Iterable[object]) -> list[BaseProcess]:
    """The ended workers where `error` says one is gone (`ended_workers`), else none: call it first thing in
    the `except`, inside a `try` of the caller's own, whose `except RuntimeError` takes torch's report if it
    comes meanwhile (a `try` in here would open only after Python may already have run torch's handler)."""
    return ended_workers(loaders) if worker_lost(error, loaders) else []


def death_said(error: BaseException, ended: Iterable[BaseProcess]) -> str:
    """What `error` says of a worker's death, in torch's words and without its closing full stop (the
    callers add their advice): torch's own report where that came first (for a bus error it adds what to
    do), else what that report says of the first of `ended` that a signal ended (not "Connection reset by
    peer", nor "exited unexpectedly")."""
    said = str(error)
    if "is killed by signal" not in said:
        for w in ended:
            if w.exitcode is not None and w.exitcode < 0:
                said = f"DataLoader worker (pid {w.pid}) is killed by signal: {signal.strsignal(-w.exitcode)}"
                break
    return said.strip().rstrip(".")


def exit_code(ended: Iterable[BaseProcess]) -> int | None:
    """The exit code of the first of `ended` that did not end well (minus the signal's number), or None."""
    return next((w.exitcode for w in ended if w.exitcode), None)


# a worker's own crash, in what it runs (image decoding, augmentation), not the system's doing
CRASHES = {signal.SIGSEGV, signal.SIGABRT, signal.SIGILL, signal.SIGFPE}


def how_it_ended(worker_exit: int | None) -> str:
    """A loader worker's end said by its exit code (minus the signal's number; None where unknown), with what
    to do: a crash or an exit of its own, shared memory, or else a kill from outside (the usual case)."""
    if worker_exit is not None and -worker_exit in CRASHES:
        return (
            "A loader worker crashed in what it runs (image decoding or augmentation, a library's native "
            "code): with num_workers=0 the main process reads the data and shows where; look for a damaged "
            "image or a library to update"
        )
    if worker_exit is not None and worker_exit > 0:
        return (
            f"A loader worker ended by itself (exit code {worker_exit}; its own lines above may say why): "
            "with num_workers=0 the main process reads the data and shows it"
        )
    if worker_exit == -signal.SIGBUS:  # torch's own words name shared memory
        return (
            "A loader worker ran out of shared memory (/dev/shm): in a container, give it more (docker run "
            "--shm-size=8g), or use fewer num_workers"
        )
    return "A loader worker was killed from outside, most often by the system for want of memory (fewer num_workers need less)"


def stop_workers(loaders: Iterable[object]) -> None:
    """End the loaders' persistent worker processes now. A notebook keeps the last exception's traceback
    (sys.last_traceback) until the next error; its frames hold the loaders, which kept their workers, each
    a copy of the kernel, running beside the next training. DataLoader has no public way to end them."""
    for loader in loaders:
        for iterator in _iterators([loader]):
            workers = list(getattr(iterator, "_workers", ()))
            try:
                iterator._shutdown_workers()
            except RuntimeError as e:  # torch's report of one that died meanwhile: moot, all are ending
                if not worker_lost(e, [loader]):  # and it would hide the error fit or evaluate ends with
                    raise
            for w in workers:  # one stuck mid-sample ignores torch's SIGTERM (loaders.WORKERS_LEAVE_SIGTERM)
                if w.is_alive():
                    w.kill()  # else the process waits for it at exit (multiprocessing joins its children)
                    w.join(timeout=5)
            loader._iterator = None  # type: ignore[attr-defined]


@contextmanager
def workers_stopped(loaders: Iterable[object]) -> Iterator[None]:
    """`stop_workers(loaders)` when the block ends, also by an error or Ctrl-C (its traceback holds them)."""
    try:
        yield
    finally:
        stop_workers(loaders)
